"""``python -m hjax verify``: measure every implemented claim of THEORY.md.

Importing this package imports the check modules, which register themselves.
"""

from . import attribution as attribution
from . import costate as costate
from . import diagram as diagram
from . import dictionary as dictionary
from . import heat as heat
from . import robustness as robustness
from ._core import CHECKS as CHECKS
from ._core import Row as Row
from ._core import bound_row as bound_row
from ._core import interval_row as interval_row
from ._core import rate_row as rate_row
from ._core import register as register
from ._core import tight_row as tight_row
