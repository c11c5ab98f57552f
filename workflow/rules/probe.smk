# Stage 3: gradient-vs-distance curves at every checkpoint of every run. As for training,
# params hold only the result-defining probe keys; probe.threads is `threads:` only.

from rnngrad.job_keys import result_settings


localrules:
    collect_curves,


rule probe_gradients:
    input:
        # a task run is probed on its test sequences, regenerated from its checkpoints' settings
        **({} if TASK_RUN else {"tokens": f"{TOKENS}/{config['probe']['split']}.npy"}),
        checkpoints=f"{RUN}/checkpoints",
        summary=f"{RUN}/summary.json",
        code=run_code("probe_gradients.py"),
    output:
        curves=f"{RUN}/probe/gradient_curves.csv",
        summary=f"{RUN}/probe/gradient_summary.csv",
        contributions=f"{RUN}/probe/temporal_contributions.csv",
        jacobians=f"{RUN}/probe/jacobian_steps.csv",
    log:
        f"{RESULTS}/logs/probe_gradients/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe_gradients/{{run}}.tsv"  # wall time, peak memory: benchmarks/resource_fit.py
    conda:
        "../../envs/rnngrad.yaml"
    threads: config["probe"]["threads"]
    resources:
        mem_mb=get_probe_mem_mb,
        runtime=get_probe_runtime,  # the probe runs on the CPU (float64): no GPU
        workflow_cores=workflow.cores,  # how its threads wait (rnngrad.threads); not a rerun trigger
    params:
        probe=result_settings("probe", config["probe"]),
    script:
        "../scripts/probe_gradients.py"


rule collect_curves:
    input:
        curves=run_files("probe/gradient_curves.csv"),
        summary=run_files("probe/gradient_summary.csv"),
        contributions=run_files("probe/temporal_contributions.csv"),
        jacobians=run_files("probe/jacobian_steps.csv"),
        code=script_code("collect_curves.py"),
    output:
        curves=f"{RESULTS}/tables/gradient_curves.csv",
        summary=f"{RESULTS}/tables/gradient_summary.csv",
        contributions=f"{RESULTS}/tables/temporal_contributions.csv",
        jacobians=f"{RESULTS}/tables/jacobian_steps.csv",
    log:
        f"{RESULTS}/logs/collect_curves.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **get_collect_resources(),
    script:
        "../scripts/collect_curves.py"


rule curves:
    input:
        rules.collect_curves.output,
