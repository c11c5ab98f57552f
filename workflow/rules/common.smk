# Validated config, paths and the grid of runs shared by all rule files.

from rnngrad.config import SCHEMA_PATH, validate_config, write_effective_config
from rnngrad.grid import expand_grid, run_path

# Fails before any job runs, naming the bad key and the allowed values.
_validated = validate_config(config)
config.clear()
config.update(_validated)

DATA = config["data_dir"]
RESULTS = config["results_dir"]
CORPUS = config["corpus"]["name"]
LEVEL = config["corpus"]["level"]
SPLITS = ("train", "valid", "test")
LEVELS = ("word", "char")
TOKENS = f"{DATA}/tokens/{CORPUS}-{LEVEL}"
RUN = f"{RESULTS}/runs/{{run}}"
CELLS = {run_path(cell): cell for cell in expand_grid(config["grid"], config["exclude"])}
EFFECTIVE_CONFIG = f"{RESULTS}/config.yaml"


def package_file(name):
    """A module of the package as an input, so editing it reruns the rules that use it."""
    return os.path.join(SRC, "rnngrad", name)


def get_cell(wildcards):
    return CELLS[wildcards.run]


def token_files(directory):
    return {
        **{split: f"{directory}/{split}.npy" for split in SPLITS},
        "vocab": f"{directory}/vocab.json",
        "stats": f"{directory}/stats.json",
    }


def run_files(name):
    """`name` (e.g. 'summary.json') of every run in the grid."""
    return [f"{RESULTS}/runs/{run}/{name}" for run in CELLS]


wildcard_constraints:
    run=r"arch~[^/]+(?:/[a-z_]+~[^/]+)*",  # key~value dirs; values may hold dots (init_scale~0.5)
    corpus="[A-Za-z0-9_.-]+",
    split="train|valid|test",
    level="word|char",


localrules:
    write_config,


rule write_config:
    output:
        EFFECTIVE_CONFIG,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=config,
    run:
        write_effective_config(params.config, output[0])
