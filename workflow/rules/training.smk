# Stage 2: train one language model per grid cell, keeping checkpoints and metrics.


localrules:
    collect_runs,


rule train_model:
    input:
        **token_files(TOKENS),
        code=[package_file("model.py"), package_file("training.py")],
    output:
        summary=f"{RUN}/summary.json",
        metrics=f"{RUN}/metrics.csv",
        epochs=f"{RUN}/epochs.csv",
        checkpoints=directory(f"{RUN}/checkpoints"),
    log:
        f"{RESULTS}/logs/train_model/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{run}}.tsv"  # wall time, peak memory: benchmarks/resource_fit.py
    conda:
        "../../envs/rnngrad.yaml"
    threads: config["training"]["threads"]  # on a cluster: --cpus-per-task
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime,  # grows with attempt: a timed-out run resumes with more
        gpu=GPUS,
    params:
        cell=get_cell,
        training=config["training"],
        corpus=config["corpus"],
    script:
        "../scripts/train_model.py"


rule collect_runs:
    input:
        summaries=run_files("summary.json"),
        epochs=run_files("epochs.csv"),
        metrics=run_files("metrics.csv"),
    output:
        runs=f"{RESULTS}/tables/runs.csv",
        epochs=f"{RESULTS}/tables/epochs.csv",
        steps=f"{RESULTS}/tables/training_steps.csv",
    log:
        f"{RESULTS}/logs/collect_runs.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **get_collect_resources(),
    script:
        "../scripts/collect_runs.py"


rule models:
    input:
        rules.collect_runs.output,
