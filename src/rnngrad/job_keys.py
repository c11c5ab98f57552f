"""Which keys of the `training`, `probe` and `task` config sections define a job's results, which say how it runs.

Result keys are the rules' params (Snakemake reruns a job whose params changed) and the
training's resume fingerprint. Execution keys reach the job without being params (the
rule's `threads:`, the script reading `snakemake.config`) and are recorded in the run's
summary, so changing them reruns nothing. Every key of these sections of
workflow/schemas/config.schema.yaml is in exactly one of the two (tests/test_reruns.py).

No torch here: the rule files import this while Snakemake builds the DAG.
"""

from __future__ import annotations

RESULT_KEYS = {
    "training": (
        "max_tokens", "loss_reduction", "lr_schedule", "lr_decay", "decay_start_epoch", "init_range",
        "checkpoints", "spectral_every", "eval_max_tokens",
    ),
    "probe": ("split", "windows", "burn_in", "max_lag", "jacobian_windows", "seed", "fit_lags", "horizon_threshold"),
    # name and T are grid axes (in each cell); the rest defines every task run's data and length.
    "task": ("name", "T", "steps", "valid_size", "test_size", "data_seed", "copy_length", "copy_symbols"),
}
EXECUTION_KEYS = {
    "training": ("device", "threads", "log_every_s"),
    "probe": ("threads",),
    "task": (),
}


def result_settings(section: str, values: dict) -> dict:
    """The result-defining keys of config section `section` (a rule's params) that the config has
    (keys of the other kind of run, rnngrad.config, are absent).

    A key in neither list fails here, when the DAG is built, rather than being silently
    left out of the params (no rerun when it changes) or of the job (not applied).
    """
    unclassified = sorted(set(values) - set(RESULT_KEYS[section]) - set(EXECUTION_KEYS[section]))
    if unclassified:
        raise KeyError(f"config keys {[f'{section}.{key}' for key in unclassified]} are neither result nor "
                       f"execution keys; classify them in rnngrad/job_keys.py")
    return {key: values[key] for key in RESULT_KEYS[section] if key in values}


def without_execution_keys(config: dict) -> dict:
    """The config with every execution key left out: what defines the pipeline's results."""
    return {name: {key: value for key, value in section.items() if key not in EXECUTION_KEYS.get(name, ())}
            if isinstance(section, dict) else section for name, section in config.items()}


def execution_settings(section: str, values: dict) -> dict:
    """The how-it-runs keys of config section `section`."""
    return {key: values[key] for key in EXECUTION_KEYS[section]}
