# Stage 1: fetch and verify the corpus, then tokenise it at word and character level.
# Only the configured corpus can be downloaded; its params hold just where the text comes
# from, so changing corpus.level does not fetch the text again.


# Quick, and compute nodes often have no internet: run in the submitting process.
localrules:
    download_corpus,
    tokenise_corpus,


rule download_corpus:
    output:
        **{split: f"{DATA}/corpus/{CORPUS}/{split}.txt" for split in SPLITS},
    log:
        f"{DATA}/logs/download_corpus/{CORPUS}.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        corpus={key: value for key, value in config["corpus"].items() if key != "level"},
    script:
        "../scripts/download_corpus.py"


rule tokenise_corpus:
    input:
        **{split: f"{DATA}/corpus/{{corpus}}/{split}.txt" for split in SPLITS},
        code=script_code("tokenise_corpus.py"),
    output:
        **token_files(f"{DATA}/tokens/{{corpus}}-{{level}}"),
    log:
        f"{DATA}/logs/tokenise_corpus/{{corpus}}-{{level}}.log",
    conda:
        "../../envs/rnngrad.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/tokenise_corpus.py"


rule corpus:
    input:
        expand(f"{DATA}/tokens/{CORPUS}-{{level}}/stats.json", level=LEVELS),
