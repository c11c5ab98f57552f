# The effective config (schema defaults filled in), written next to the results so that
# every result says what produced it. Rerun whenever the config changes (params).


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
        config=config,
    script:
        "../scripts/write_config.py"
