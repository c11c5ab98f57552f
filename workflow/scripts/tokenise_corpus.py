"""Rule tokenise_corpus: text splits -> token id arrays, vocabulary and stats."""

import sys

from rnngrad.corpus import SPLITS, CorpusError, tokenise_corpus
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    try:
        tokenise_corpus(
            {split: snakemake.input[split] for split in SPLITS},
            dict(snakemake.output.items()),
            level=snakemake.wildcards.level,
            corpus=snakemake.wildcards.corpus,
        )
    except CorpusError as error:
        print(f"CorpusError: {error}", file=sys.stderr)  # one line in the job log
        sys.exit(1)
