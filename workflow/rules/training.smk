# Stage 2: train one language model per grid cell, keeping checkpoints and metrics.
# Params hold only what defines a run's numbers (rnngrad.job_keys): the script reads how it
# runs (device, logging cadence) from the config and threads from `threads:`, so changing
# those reruns nothing. Collection code (collect.py) is not an input of train_model.

from rnngrad.job_keys import result_settings


localrules:
    collect_runs,


rule train_model:
    input:
        **token_files(TOKENS),
        code=run_code("train_model.py"),
    output:
        **({"evaluations": f"{RUN}/evaluations.csv"} if TASK_RUN else {}),  # test metrics per checkpoint
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
        workflow_cores=workflow.cores,  # how its threads wait (rnngrad.threads); not a rerun trigger
    params:
        # what the run reads: its task's settings, or the corpus
        **({"task": get_task_settings} if TASK_RUN else {"corpus": CORPUS, "level": LEVEL}),
        cell=get_cell,
        training=result_settings("training", config["training"]),
    script:
        "../scripts/train_model.py"


rule collect_runs:
    input:
        **({"evaluations": run_files("evaluations.csv")} if TASK_RUN else {}),
        summaries=run_files("summary.json"),
        epochs=run_files("epochs.csv"),
        metrics=run_files("metrics.csv"),
        code=script_code("collect_runs.py"),
    output:
        **({"evaluations": f"{RESULTS}/tables/task_evaluations.csv"} if TASK_RUN else {}),
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
