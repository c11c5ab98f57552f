# Stage 1: fetch and verify the corpus, then tokenise it at word and character level.


rule download_corpus:
    output:
        expand(f"{DATA}/corpus/{{{{corpus}}}}/{{split}}.txt", split=SPLITS),
    params:
        corpus=config["corpus"],
    log:
        f"{DATA}/logs/download_corpus/{{corpus}}.log",
    script:
        "../scripts/download_corpus.py"


rule tokenise_corpus:
    input:
        expand(f"{DATA}/corpus/{{{{corpus}}}}/{{split}}.txt", split=SPLITS),
        code=package_file("corpus.py"),
    output:
        **token_files(f"{DATA}/tokens/{{corpus}}-{{level}}"),
    log:
        f"{DATA}/logs/tokenise_corpus/{{corpus}}-{{level}}.log",
    script:
        "../scripts/tokenise_corpus.py"


rule corpus:
    input:
        expand(f"{DATA}/tokens/{CORPUS}-{{level}}/stats.json", level=LEVELS),
