# Stage 4: figures, tables and the report, from the tidy tables only.


rule figures:
    input:
        rules.collect_runs.output,
        rules.collect_curves.output,
