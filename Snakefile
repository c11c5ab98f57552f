# Measure vanishing and exploding gradients in recurrent networks.
#   snakemake --cores 8                        default config (config/config.yaml)
#   snakemake --cores 8 --configfile config/paper.yaml
#   snakemake corpus | models | curves | figures
# The science lives in the package src/rnngrad; rules call one function each.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs (local, SLURM or conda) import the package from this checkout. (PYTHONPATH is set
# here, not required from the user, so the linter's `envvars:` advice does not apply.)
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.getenv("PYTHONPATH")])))


# The default config, unless --configfile names others: a shipped config means what its
# file says (keys it leaves out take the schema's defaults), never a patch on this one.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/resources.smk"


if not TASK_RUN:  # a task run generates its sequences: no corpus to fetch

    include: "workflow/rules/corpus.smk"


include: "workflow/rules/training.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        rules.figures.input,
        rules.curves.input,
        rules.models.input,
        EFFECTIVE_CONFIG,
