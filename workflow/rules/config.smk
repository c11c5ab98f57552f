# The effective config (schema defaults filled in), written next to the results so that
# every result says what produced it. Rewritten when a result-defining key changes (params);
# execution keys (threads, device, logging) rerun nothing: each run's summary.json records them.

from rnngrad.job_keys import without_execution_keys


localrules:
    write_config,


rule write_config:
    output:
        EFFECTIVE_CONFIG,
    log:
        f"{RESULTS}/logs/write_config.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        results=without_execution_keys(config),
    script:
        "../scripts/write_config.py"
