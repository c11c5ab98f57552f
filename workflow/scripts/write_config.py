# Write the validated config with defaults filled in (rule write_config).
from rnngrad.config import write_effective_config
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    write_effective_config(snakemake.config, snakemake.output[0])
