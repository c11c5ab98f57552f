# Stage 4: figures, tables and the report, from the tidy tables only. A figure's job
# reads only the tables it draws (rnngrad.figures.FIGURES) and figures.py itself, so
# editing the plotting code reruns the figure jobs and never a training or probe job.

from rnngrad.figures import FIGURES
from rnngrad.tables import PAPER_TABLES

TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
TABLE_FORMATS = ("csv", "md", "tex")


report: "../report/workflow.rst"


wildcard_constraints:
    figure="|".join(FIGURES),


localrules:
    plot_figure,
    make_tables,


def get_figure_tables(wildcards):
    return {table: f"{TABLES_DIR}/{table}.csv" for table in FIGURES[wildcards.figure].tables}


def get_figure_category(wildcards):
    return FIGURES[wildcards.figure].category


def get_figure_subcategory(wildcards):
    return FIGURES[wildcards.figure].subcategory


def get_figure_caption(wildcards):
    # report() takes one caption file per rule; figure.rst includes this figure's own.
    return os.path.join(workflow.basedir, "workflow", "report", f"{wildcards.figure}.rst")


rule plot_figure:
    input:
        unpack(get_figure_tables),
        code=package_file("figures.py"),
    output:
        png=report(
            f"{FIGURES_DIR}/{{figure}}.png",
            caption="../report/figure.rst",
            category=get_figure_category,
            subcategory=get_figure_subcategory,
        ),
        pdf=f"{FIGURES_DIR}/{{figure}}.pdf",
    params:
        caption_file=get_figure_caption,
    threads: 1
    resources:
        **get_collect_resources(),  # reads the grid-wide tables
    log:
        f"{RESULTS}/logs/plot_figure/{{figure}}.log",
    conda:
        "../../envs/rnngrad.yaml"
    script:
        "../scripts/plot_figure.py"


rule make_tables:
    input:
        runs=f"{TABLES_DIR}/runs.csv",
        summary=f"{TABLES_DIR}/gradient_summary.csv",
        code=package_file("tables.py"),
    output:
        **{
            f"{name}_{fmt}": report(
                f"{TABLES_DIR}/{name}.{fmt}",
                caption=f"../report/table_{name}.rst",
                category="Tables",
                subcategory=name.replace("_", " "),
            )
            if fmt == "csv"
            else f"{TABLES_DIR}/{name}.{fmt}"
            for name in PAPER_TABLES
            for fmt in TABLE_FORMATS
        },
    params:
        out_dir=TABLES_DIR,
    threads: 1
    resources:
        **get_collect_resources(),  # reads the grid-wide tables
    log:
        f"{RESULTS}/logs/make_tables.log",
    conda:
        "../../envs/rnngrad.yaml"
    script:
        "../scripts/make_tables.py"


rule figures:
    input:
        expand(f"{FIGURES_DIR}/{{figure}}.{{ext}}", figure=FIGURES, ext=("png", "pdf")),
        rules.make_tables.output,
        report(EFFECTIVE_CONFIG, caption="../report/config.rst", category="Configuration"),
