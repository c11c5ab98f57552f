# Stage 4: figures, tables and the report, from the tidy tables only. A figure's job
# reads only the tables it draws (rnngrad.figures.FIGURES) and the code that draws it:
# its category's module and the shared ones (rnngrad.figures.code_files). Editing one
# category's module reruns that category's figures, a shared module all figures (and
# selection.py the tables too), never a training or probe job.


report: "../report/workflow.rst"


wildcard_constraints:
    figure="|".join(KIND_FIGURES),


localrules:
    plot_figure,
    make_tables,


rule plot_figure:
    input:
        unpack(get_figure_tables),
        code=get_figure_code,
    output:
        png=report(
            f"{FIGURES_DIR}/{{figure}}.png",
            caption="../report/figure.rst",
            category=get_figure_category,
            subcategory=get_figure_subcategory,
        ),
        pdf=f"{FIGURES_DIR}/{{figure}}.pdf",
    log:
        f"{RESULTS}/logs/plot_figure/{{figure}}.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **get_collect_resources(),  # reads the grid-wide tables
    params:
        caption_file=get_figure_caption,
    script:
        "../scripts/plot_figure.py"


rule make_tables:
    input:
        runs=f"{TABLES_DIR}/runs.csv",
        summary=f"{TABLES_DIR}/gradient_summary.csv",
        code=script_code("make_tables.py"),
    output:
        **{
            f"{name}_{fmt}": (
                report(
                    f"{TABLES_DIR}/{name}.{fmt}",
                    caption=f"../report/table_{name}.rst",
                    category="Tables",
                    subcategory=name.replace("_", " "),
                )
                if fmt == "csv"
                else f"{TABLES_DIR}/{name}.{fmt}"
            )
            for name in KIND_TABLES
            for fmt in TABLE_FORMATS
        },
    log:
        f"{RESULTS}/logs/make_tables.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **get_collect_resources(),  # reads the grid-wide tables
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        kind=KIND,  # corpus or task runs: which tables (rnngrad.tables.tables_for)
    script:
        "../scripts/make_tables.py"


rule figures:
    input:
        expand(f"{FIGURES_DIR}/{{figure}}.{{ext}}", figure=KIND_FIGURES, ext=("png", "pdf")),
        rules.make_tables.output,
        report(EFFECTIVE_CONFIG, caption="../report/config.rst", category="Configuration"),
