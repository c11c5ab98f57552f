"""Rule download_corpus: fetch and verify the three text splits of the corpus."""

import sys

from rnngrad.corpus import CorpusError, download_corpus
from rnngrad.io import log_to

with log_to(snakemake.log[0]):
    try:
        download_corpus(snakemake.params.corpus, dict(snakemake.output.items()))
    except CorpusError as error:
        print(f"CorpusError: {error}", file=sys.stderr)  # one line in the job log
        sys.exit(1)
