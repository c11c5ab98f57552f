# Validated config, paths and the grid of runs shared by all rule files.

from rnngrad import archs
from rnngrad.config import run_kind, validate_config
from rnngrad.figures import FIGURES, code_files, figures_for
from rnngrad.grid import expand_grid, path_cell, run_path
from rnngrad.job_code import job_code
from rnngrad.tables import tables_for
from rnngrad.tasks import settings_for

# Fails before any job runs, naming the bad key and the allowed values.
_validated = validate_config(config)
config.clear()
config.update(_validated)
# Jobs (their own processes, local or on a cluster node) register the config's own archs on import.
os.environ[archs.ARCH_FILES_ENV] = os.pathsep.join(str(archs.arch_file(name)) for name in archs.user_names())

DATA = config["data_dir"]
RESULTS = config["results_dir"]
# A language-model run reads a corpus; a task run (config section `task`) generates its sequences.
KIND = run_kind(config)
TASK = config.get("task")
TASK_RUN = KIND == "task"
CORPUS = None if TASK_RUN else config["corpus"]["name"]
LEVEL = None if TASK_RUN else config["corpus"]["level"]
SPLITS = ("train", "valid", "test")
LEVELS = ("word", "char")
TOKENS = None if TASK_RUN else f"{DATA}/tokens/{CORPUS}-{LEVEL}"
RUN = f"{RESULTS}/runs/{{run}}"
CELLS = {run_path(cell): cell for cell in expand_grid(config["grid"], config["exclude"], TASK, config["arch_grid"])}
KIND_FIGURES = figures_for(KIND)  # the figures of this kind of run
KIND_TABLES = tables_for(KIND)
EFFECTIVE_CONFIG = f"{RESULTS}/config.yaml"
TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
TABLE_FORMATS = ("csv", "md", "tex")


def package_file(name):
    """A module of the package as an input, so editing it reruns the rules that use it. Relative
    to the working directory: a finished grid moved or copied with its checkout (mv, rsync -a)
    has the same inputs, so nothing reruns."""
    return os.path.relpath(os.path.join(SRC, "rnngrad", name))


def script_code(script):
    """Every package module that workflow/scripts/`script` executes (rnngrad.job_code), as inputs."""
    return [package_file(name) for name in job_code(os.path.join(workflow.basedir, "workflow", "scripts", script))]


def run_code(script):
    """script_code, the file of the run's arch and what that file imports (the IRNN's the ReLU RNN's):
    editing one arch's file reruns only the runs that execute it."""
    shared = script_code(script)

    def code(wildcards):
        arch_file = archs.arch_file(CELLS[wildcards.run]["arch"])
        imported = [package_file(name) for name in job_code(arch_file)]
        return shared + [path for path in imported if path not in shared] + [os.path.relpath(arch_file)]

    return code


def get_cell(wildcards):
    # The keys the run path names (grid.path_cell): a new arch or arch hyperparameter changes no params.
    return path_cell(CELLS[wildcards.run])


def get_task_settings(wildcards):
    """The task section's keys that define this run (the copy task's shape does not concern the adding problem)."""
    return settings_for(CELLS[wildcards.run]["task"], TASK)


def token_files(directory):
    if directory is None:  # a task run reads no corpus
        return {}
    return {
        **{split: f"{directory}/{split}.npy" for split in SPLITS},
        "vocab": f"{directory}/vocab.json",
        "stats": f"{directory}/stats.json",
    }


def run_files(name):
    """`name` (e.g. 'summary.json') of every run in the grid."""
    return [f"{RESULTS}/runs/{run}/{name}" for run in CELLS]


wildcard_constraints:
    run=r"(?:task~[^/]+/T~[^/]+/)?arch~[^/]+(?:/[a-z][a-z0-9_]*~[^/]+)*",  # key~value dirs (s6_state_size~4); values may hold dots
    corpus="[A-Za-z0-9_.-]+",
    split="train|valid|test",
    level="word|char",


def get_figure_tables(wildcards):
    return {table: f"{TABLES_DIR}/{table}.csv" for table in FIGURES[wildcards.figure].tables}


def get_figure_code(wildcards):
    # The figure's category module and the shared figure code: editing one category's
    # module reruns only its figures (rnngrad.figures.registry).
    return [package_file(path) for path in code_files(wildcards.figure)]


def get_figure_category(wildcards):
    return FIGURES[wildcards.figure].category


def get_figure_subcategory(wildcards):
    return FIGURES[wildcards.figure].subcategory


def get_figure_caption(wildcards):
    # report() takes one caption file per rule; figure.rst includes this figure's own.
    return os.path.relpath(os.path.join(workflow.basedir, "workflow", "report", f"{wildcards.figure}.rst"))
