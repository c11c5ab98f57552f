"""The colour-blind-safe styles archs are drawn in: 18 (colour, line style) pairs.

No more than about nine hues stay distinguishable under colour-vision deficiency, so the
palette is two sets of nine, each colour-blind safe on its own: the Okabe & Ito (2008)
colours (with the grey that usually completes them) drawn solid, then Paul Tol's "muted"
scheme (personal.sron.nl/~pault) drawn dashed, so that a line of the second set differs
from every line of the first by its dashes whatever the viewer's colour vision. Every
built-in arch declares one solid entry; an arch that declares no colour (a user's) takes
the first entry no registered arch uses.
"""

OKABE_ITO = ("#D55E00", "#CC79A7", "#E69F00", "#000000", "#0072B2", "#009E73", "#56B4E9", "#999999", "#F0E442")
TOL_MUTED = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499")
PALETTE = tuple((colour, "-") for colour in OKABE_ITO) + tuple((colour, "--") for colour in TOL_MUTED)


def next_free(used: set[tuple[str, str]]) -> tuple[str, str]:
    """The first palette entry not in `used`; once all are taken, the palette starts over."""
    for entry in PALETTE:
        if entry not in used:
            return entry
    return PALETTE[len(used) % len(PALETTE)]
