"""twnn-jax: fixed-point networks in JAX, with forward and backward iteration counts you can see."""

from ._backward_stats import BackwardStats as BackwardStats
from ._backward_stats import backward_probe as backward_probe
from ._backward_stats import backward_stats as backward_stats
from ._backward_stats import value_and_grad_with_stats as value_and_grad_with_stats
from ._fix import GRAD_MODES as GRAD_MODES
from ._fix import FixError as FixError
from ._fix import fix as fix
from ._iterate import SOLVERS as SOLVERS
from ._iterate import FixStats as FixStats

__version__ = "0.1.0"
