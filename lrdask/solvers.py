"""Solvers: they see only a function of the parameter vector θ that returns the cost and
its gradient (and, for Newton, the Hessian). They never touch the data.

θ is flat: the coefficients, then the intercept(s) (``objective.Layout`` says which entry is
which). Every call of ``evaluate`` is one distributed pass (or, in tests, a plain NumPy
one), so the same loops serve both. ``gradient_descent`` with a fixed α is the lecture's
update, exactly: θ := θ − α·∇J, i.e. w := w − α·dw and b := b − α·db, from θ = 0.

Stopping means the same for every solver (``StopRule``):

- ``gtol`` (stationarity): the run has *converged* when max_i |∇F(θ)_i| ≤ gtol, the
  largest absolute component of the gradient of the objective F (mean log loss plus
  penalties); with an L1 term, the proximal-gradient measure max_i |θ − prox(θ − ∇f)|_i,
  which is 0 exactly at the optimum. The solver gets the measure as ``measure`` (by
  default the one of its own coordinates; the estimator passes the one on standardized
  coordinates, ``objective.Objective.measure``). scikit-learn's lbfgs (``tol``, default
  1e-4, on the same mean-loss scale) and H2O's ``gradient_epsilon`` (1e-6 unpenalized,
  1e-4 penalized, on standardized data by default) are the anchors.
- ``tol`` (progress): when the objective improved by at most ``tol`` from one iterate to
  the next (0 ≤ F_{k−1} − F_k ≤ tol) but the gradient test fails, the run has *stalled*: a
  small step gains little far from the optimum too. L-BFGS uses scipy's relative form,
  (F_{k−1} − F_k) / max(|F_{k−1}|, |F_k|, 1) ≤ tol, the same rule whenever F ≤ 1.
  ``tol = 0`` turns this rule off.
- ``max_iter``: the run stopped at the iteration limit.
- *diverged*: the final objective is above the starting one, or not finite (a step α
  too large); a non-finite objective or gradient ends the run at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# evaluate(θ) -> (J, ∇J) or, for Newton, (J, ∇J, ∇²J)
Evaluate = Callable[[np.ndarray], tuple]
Callback = Callable[["IterationInfo"], None]
# measure(θ, ∇J) -> (a norm, the max |component|) of the stationarity residual that
# ``gtol`` bounds; by default the L1 penalty's ``measure`` (the gradient itself without L1)
Measure = Callable[[np.ndarray, np.ndarray], tuple[float, float]]

NEWTON_MAX_FEATURES = 2000


CONVERGED, STALLED, MAX_ITER, DIVERGED = "converged", "stalled", "max_iter", "diverged"


@dataclass(frozen=True)
class StopRule:
    """When a solver stops: see the module docstring."""

    tol: float = 1e-8
    gtol: float = 1e-4
    relative: bool = False  # tol on (F_{k−1} − F_k) / max(|F_{k−1}|, |F_k|, 1), as scipy's


@dataclass
class SolverState:
    """Everything needed to continue a run: the point, the iteration count and the history."""

    params: np.ndarray
    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    grad_norm: float = float("nan")
    grad_max: float = float("nan")  # max |∇F| (or the L1 prox measure) at params
    status: str = ""  # "", CONVERGED, STALLED, MAX_ITER or DIVERGED
    cost_increased_at: int | None = None
    step: float | None = None  # the line search's last accepted step
    step_settled: bool = False  # the line search has had to shorten a step at least once
    anchor: np.ndarray | None = None  # agd: the last proximal iterate x (params holds y)
    momentum: float = 1.0  # agd: FISTA's t_k
    memory_s: list[np.ndarray] = field(default_factory=list)  # lbfgs: the last steps, oldest first
    memory_y: list[np.ndarray] = field(default_factory=list)  # lbfgs: their gradient changes
    validation_history: list[list[float]] = field(default_factory=list)  # [iteration, cost]
    stop_reason: str = ""

    @property
    def converged(self) -> bool:
        """The gradient test held at ``params`` (derived from ``status``)."""
        return self.status == CONVERGED

    @classmethod
    def initial(cls, n_params: int) -> SolverState:
        return cls(np.zeros(n_params))


@dataclass(frozen=True)
class IterationInfo:
    """Passed to callbacks after every iterate: for progress bars, logs, checkpoints."""

    iteration: int
    cost: float
    grad_norm: float
    state: SolverState
    passes: int = 0


class StopTraining(Exception):
    """Raised by a callback to end the run at the current iterate (early stopping)."""


@dataclass(frozen=True)
class L1Penalty:
    """λ₁·Σ_i s_i·|θ_i| over the entries in ``mask`` (intercepts never are), with
    per-entry scales s (``scales``, default 1): a preconditioned solver's coordinates
    θ_i = σ_i·coef_i carry the strength λ₁/σ_i, so the penalty is unchanged."""

    strength: float = 0.0
    mask: np.ndarray | None = None
    scales: np.ndarray | None = None  # one per entry of θ; only the masked ones are used

    def strengths(self):
        """λ₁·s_i for the masked entries (a scalar when s = 1)."""
        if self.scales is None:
            return self.strength
        return self.strength * self.scales[self.mask]

    def value(self, theta: np.ndarray) -> float:
        if not self.strength:
            return 0.0
        return float(np.sum(self.strengths() * np.abs(theta[self.mask])))

    def prox(self, theta: np.ndarray, step: float) -> np.ndarray:
        """argmin_x Σ λ₁·s_i·step·|x_i| + ½‖x − θ‖²: soft-thresholding of the masked
        entries."""
        if not self.strength:
            return theta
        out = theta.copy()
        shrink = self.strengths() * step
        masked = theta[self.mask]
        out[self.mask] = np.sign(masked) * np.maximum(np.abs(masked) - shrink, 0.0)
        return out

    def measure(self, theta: np.ndarray, grad: np.ndarray) -> tuple[float, float]:
        """(‖θ − prox(θ − ∇J)‖, max_i |θ − prox(θ − ∇J)|_i): the gradient's norm and largest
        component when λ₁ = 0, both 0 exactly at the optimum; a solver's default
        ``Measure`` (``gtol`` bounds the second)."""
        residual = self.residual(theta, grad)
        top = float(np.max(np.abs(residual))) if residual.size else 0.0
        return float(np.linalg.norm(residual)), top

    def pseudo_gradient(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """OWL-QN's pseudo-gradient of J + λ₁·Σ s_i·|θ_i| (Andrew & Gao 2007): the
        gradient where |θ_i| is differentiable; at θ_i = 0 the one-sided derivative that
        descends, or 0 when neither does. ``grad`` itself when λ₁ = 0."""
        if not self.strength:
            return np.asarray(grad)
        out = np.array(grad, dtype=float)
        g = out[self.mask]
        t = theta[self.mask]
        lam = self.strengths()
        right, left = g + lam, g - lam
        at_zero = np.where(right < 0, right, np.where(left > 0, left, 0.0))
        out[self.mask] = np.where(t > 0, right, np.where(t < 0, left, at_zero))
        return out

    def residual(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if not self.strength:
            return np.asarray(grad)
        return theta - self.prox(theta - grad, 1.0)


NO_L1 = L1Penalty()


def gradient_descent(
    evaluate: Evaluate,
    state: SolverState,
    alpha: float,
    max_iter: int,
    tol: float | StopRule,
    callback: Callback | None = None,
    *,
    l1: L1Penalty = NO_L1,
    line_search: bool = False,
    accelerate: bool = False,
    measure: Measure | None = None,
) -> SolverState:
    """Batch (proximal) gradient descent, continuing from ``state``.

    Fixed step: θ := prox(θ − α·∇J), the lecture's update when there is no L1 term.
    ``line_search``: backtracking instead of a hand-tuned α — each iteration first tries
    twice the last accepted step and halves it until the sufficient-decrease condition
    J(θ⁺) ≤ J(θ) + ∇J·(θ⁺ − θ) + ‖θ⁺ − θ‖²/(2t) holds; every trial is one pass, and the
    accepted trial's pass also serves the next iteration. ``accelerate`` (solver "agd"):
    Nesterov/FISTA momentum, restarted whenever the momentum points uphill
    (O'Donoghue & Candès' gradient restart); its history holds the cost at the
    extrapolated points where the gradient is taken.

    ``loss_history[k]`` is the objective at the k-th point (θ₀ first); ``n_iter`` counts
    the updates applied. The run stops by the ``StopRule`` (the last point is returned
    without a further update), or after ``max_iter`` updates. A rise in the cost does not
    count as convergence; for plain gd it is recorded in ``cost_increased_at`` (α is too
    large).
    """
    rule = _rule(tol)
    measure = measure or l1.measure
    y = state.params.copy()
    x = y if state.anchor is None or not accelerate else state.anchor.copy()
    step = state.step or alpha
    momentum = state.momentum if accelerate else 1.0
    cost, grad = evaluate(y)[:2]
    while True:
        if accelerate:  # what a continuation (or a checkpoint) needs besides y
            state.anchor, state.momentum = x.copy(), momentum
        # while a line search is still growing its step from a small α, a small gain in
        # the objective says the step is small, not that the run stalled
        growing = line_search and not state.step_settled
        active = StopRule(0.0, rule.gtol) if growing else rule
        _record(state, y, cost + l1.value(y), grad, measure, active, callback, accelerate)
        if state.status or state.n_iter >= max_iter:
            return _finish(state)
        if line_search:
            x_new, trial, step, cut = _backtrack(evaluate, y, cost, grad, step, l1)
            state.step_settled = state.step_settled or cut
        else:
            x_new, trial = l1.prox(y - step * grad, step), None
        state.n_iter += 1
        state.step = step if line_search else None
        if accelerate:
            y, momentum = _extrapolate(x, x_new, y, momentum)
            trial = trial if y is x_new else None
        else:
            y = x_new
        x = x_new
        cost, grad = trial if trial is not None else evaluate(y)[:2]


def _rule(tol) -> StopRule:
    return tol if isinstance(tol, StopRule) else StopRule(tol, 0.0)


def _record(state, point, cost, grad, measure, rule, callback, accelerate=False) -> None:
    state.params = point.copy()
    state.loss_history.append(float(cost))
    state.grad_norm, state.grad_max = measure(point, grad)
    _note_progress(state, rule, note_rise=not accelerate)
    if callback is not None:
        callback(IterationInfo(state.n_iter, float(cost), state.grad_norm, state))


def _finish(state: SolverState) -> SolverState:
    """The final status: converged/stalled as noted, else max_iter; diverged when the
    objective ended above where it started."""
    history = state.loss_history
    slack = 4 * np.finfo(float).eps * abs(history[0]) if history else 0.0  # rounding is no rise
    rose = len(history) > 1 and not history[-1] <= history[0] + slack  # NaN counts as a rise
    if state.status != CONVERGED and rose:
        state.status = DIVERGED
    elif not state.status:
        state.status = MAX_ITER
    return state


def _backtrack(evaluate, y, cost, grad, step, l1):
    """One backtracking line search from ``y``: (accepted point, its (J, ∇J), its step,
    whether it had to shorten the step).

    The test is the sufficient decrease above; once the decrease is within the rounding
    of J (near the optimum J cannot tell a good step from a bad one) the step must also
    pass the gradient form of the same test, t·‖∇J(x⁺) − ∇J(y)‖ ≤ ‖x⁺ − y‖ (a local
    Lipschitz estimate, as TFOCS does when function values are inaccurate)."""
    step = 2.0 * step
    slack = 4 * np.finfo(float).eps * abs(cost)  # rounding in J itself is not a rise
    cut = False
    while True:
        x = l1.prox(y - step * grad, step)
        d = x - y
        trial = evaluate(x)[:2]
        model = cost + float(grad @ d) + float(d @ d) / (2.0 * step)
        if not np.any(d):
            return x, trial, step, cut
        if trial[0] <= model + slack:
            visible = cost - trial[0] > slack
            step_norm = float(np.linalg.norm(d))
            if visible or step * float(np.linalg.norm(trial[1] - grad)) <= step_norm:
                return x, trial, step, cut
        step /= 2.0
        cut = True


def _extrapolate(x, x_new, y, momentum):
    """FISTA's next point y and momentum; restart (y = x_new) when it points uphill."""
    if float((y - x_new) @ (x_new - x)) > 0:
        return x_new, 1.0
    following = (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
    return x_new + ((momentum - 1.0) / following) * (x_new - x), following


def _note_progress(state: SolverState, rule: StopRule, note_rise: bool = True) -> None:
    """Mark convergence (max |∇F| ≤ gtol) or a stall (0 ≤ F_{k−1} − F_k ≤ tol without it),
    and remember the first rise in cost."""
    state.status = ""
    if not (math.isfinite(state.loss_history[-1]) and math.isfinite(state.grad_max)):
        state.status = DIVERGED  # overflow: a fixed step far too large
        return
    if state.grad_max <= rule.gtol:
        state.status = CONVERGED
        return
    history = state.loss_history
    if len(history) < 2:
        return
    improvement = history[-2] - history[-1]
    if rule.relative:
        improvement /= max(abs(history[-2]), abs(history[-1]), 1.0)
    if rule.tol > 0 and 0.0 <= improvement <= rule.tol:
        state.status = STALLED
    elif (
        improvement < -64 * np.finfo(float).eps * abs(history[-1])  # rounding in a sum of m rows
        and note_rise
        and state.cost_increased_at is None
    ):
        state.cost_increased_at = len(history) - 1


def lbfgs(
    evaluate: Evaluate,
    state: SolverState,
    max_iter: int,
    tol: float | StopRule,
    callback: Callback | None = None,
    *,
    l1: L1Penalty = NO_L1,
    memory: int = 10,
    measure: Measure | None = None,
) -> SolverState:
    """L-BFGS on the driver over the same distributed pass, continuing from ``state``.

    The direction is the two-loop recursion over the last ``memory`` pairs (s, y) of
    steps and gradient changes, scaled by s·y/y·y of the newest pair (Nocedal & Wright,
    *Numerical Optimization*, 2nd ed., Algorithm 7.4). The step satisfies the strong Wolfe
    conditions (c₁ = 1e-4, c₂ = 0.9; Algorithms 3.5 and 3.6, cubic interpolation); the
    first step of a run, or after a restart, has length 1, later ones start at α = 1.
    With an L1 term it is OWL-QN (Andrew & Gao, "Scalable training of L1-regularized
    log-linear models", ICML 2007): the pseudo-gradient replaces the gradient, the
    direction and every trial point are kept in the orthant of the current point, and
    the step backtracks (×0.1 on the first iteration, ×0.5 after) to the sufficient
    decrease of J + λ₁·‖θ‖₁. This is the pair Spark's LogisticRegression uses (Breeze's
    ``LBFGS`` with a strong-Wolfe search, ``OWLQN`` with backtracking).

    Every function evaluation is one pass returning cost and gradient together; the
    accepted trial's pass also serves the next iteration. A pair with s·y ≤ ε·‖s‖·‖y‖
    (no curvature seen) is not stored. The pairs are part of ``state``
    (``memory_s``/``memory_y``) and so of a checkpoint: a resumed run continues the same
    arithmetic. ``loss_history`` holds the objective at each accepted iterate (θ₀ first);
    ``n_iter`` counts them. Stopping is the ``StopRule`` with scipy's relative form of
    ``tol``. When the line search finds no lower point (rounding near the optimum, or a
    direction the memory spoiled), the memory is dropped and the search tried once more
    along the (pseudo-)gradient; if that fails too, the run has stalled.
    """
    rule = dataclasses.replace(_rule(tol), relative=True)
    measure = measure or l1.measure
    theta = state.params.copy()
    cost, grad = evaluate(theta)[:2]
    value = cost + l1.value(theta)
    while True:
        _record(state, theta, value, grad, measure, rule, callback)
        if state.status or state.n_iter >= max_iter:
            return _finish(state)
        found = _quasi_newton_step(evaluate, theta, value, grad, l1, state)
        if found is None:
            state.status = STALLED
            return _finish(state)
        new_theta, value, new_grad = found
        _remember(state, new_theta - theta, new_grad - grad, memory)
        theta, grad = new_theta, new_grad
        state.n_iter += 1


def _quasi_newton_step(evaluate, theta, value, grad, l1, state):
    """(θ⁺, F(θ⁺), ∇J(θ⁺)) along the L-BFGS (or OWL-QN) direction, or None; drops the
    memory and tries the (pseudo-)gradient once when the first search fails."""
    for restart in (False, True):
        if restart:
            if not state.memory_s:
                return None
            state.memory_s, state.memory_y = [], []
        pg = l1.pseudo_gradient(theta, grad)
        direction = -_two_loop(pg, state.memory_s, state.memory_y)
        if l1.strength:  # keep only the components that descend along −pg (OWL-QN)
            direction[l1.mask] = np.where(
                direction[l1.mask] * pg[l1.mask] < 0, direction[l1.mask], 0.0
            )
        slope = float(pg @ direction)
        if not slope < 0:  # no descent (a spoiled memory, or pg = 0)
            continue
        first = not state.memory_s
        size = float(np.linalg.norm(direction))
        start = 1.0 / size if first else 1.0
        if l1.strength:
            found = _orthant_backtrack(evaluate, theta, value, pg, direction, l1, start, first)
        else:
            found = _strong_wolfe(evaluate, theta, value, direction, slope, start)
        if found is not None:
            return found
    return None


def _two_loop(g: np.ndarray, memory_s: list, memory_y: list) -> np.ndarray:
    """H·g for the L-BFGS inverse-Hessian approximation H of the stored pairs (oldest
    first), with H₀ = (s·y / y·y)·I from the newest pair (Nocedal & Wright, Alg. 7.4)."""
    q = g.copy()
    rhos = [1.0 / float(y @ s) for s, y in zip(memory_s, memory_y, strict=True)]
    alphas = []
    for s, y, rho in zip(reversed(memory_s), reversed(memory_y), reversed(rhos), strict=True):
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    if memory_s:
        s, y = memory_s[-1], memory_y[-1]
        q *= float(s @ y) / float(y @ y)
    for s, y, rho, a in zip(memory_s, memory_y, rhos, reversed(alphas), strict=True):
        b = rho * float(y @ q)
        q += (a - b) * s
    return q


def _remember(state: SolverState, s: np.ndarray, y: np.ndarray, memory: int) -> None:
    """Store the pair (s, y), keeping the newest ``memory``; skip it without curvature."""
    if float(s @ y) > np.finfo(float).eps * float(np.linalg.norm(s) * np.linalg.norm(y)):
        state.memory_s = [*state.memory_s, s][-memory:]
        state.memory_y = [*state.memory_y, y][-memory:]


WOLFE_C1, WOLFE_C2, LINE_SEARCH_MAX = 1e-4, 0.9, 20


def _strong_wolfe(evaluate, theta, value, direction, slope, step):
    """A step α along ``direction`` with J(θ + α·d) ≤ J(θ) + c₁·α·∇J·d and
    |∇J(θ + α·d)·d| ≤ c₂·|∇J·d| (Nocedal & Wright, Algorithms 3.5 and 3.6): the trial's
    (θ⁺, J, ∇J), or None. After ``LINE_SEARCH_MAX`` trials it returns the lowest trial with
    sufficient decrease, if any."""
    trials = 0

    def phi(alpha):
        nonlocal trials
        trials += 1
        point = theta + alpha * direction
        cost, grad = evaluate(point)[:2]
        return alpha, point, float(cost), grad, float(grad @ direction)

    def decreases(t):
        return t[2] <= value + WOLFE_C1 * t[0] * slope

    def curved(t):
        return abs(t[4]) <= -WOLFE_C2 * slope

    previous = (0.0, theta, value, None, slope)
    best = None
    current = phi(step)
    while True:
        if not decreases(current) or (previous[0] > 0 and current[2] >= previous[2]):
            lo, hi = previous, current
            break
        best = current
        if curved(current):
            return current[1:4]
        if current[4] >= 0:
            lo, hi = current, previous
            break
        if trials >= LINE_SEARCH_MAX:
            return best[1:4]
        previous, current = current, phi(2.0 * current[0])
    while trials < LINE_SEARCH_MAX:  # zoom
        alpha = _cubic_min(lo, hi)
        if alpha is None or alpha == lo[0] or alpha == hi[0]:
            break
        trial = phi(alpha)
        if not decreases(trial) or trial[2] >= lo[2]:
            hi = trial
            continue
        best = trial if best is None or trial[2] < best[2] else best
        if curved(trial):
            return trial[1:4]
        if trial[4] * (hi[0] - lo[0]) >= 0:
            hi = lo
        lo = trial
    if best is not None and best[2] < value:
        return best[1:4]
    return None


def _cubic_min(lo, hi):
    """The minimizer of the cubic through (α, φ, φ') at both ends, kept at least 10 % of
    the interval away from its ends (bisection when the cubic has none); None when the
    interval is too short to split."""
    a, fa, ga = lo[0], lo[2], lo[4]
    b, fb, gb = hi[0], hi[2], hi[4]
    left, right = min(a, b), max(a, b)
    width = right - left
    if not width > 0 or left + 0.5 * width in (left, right):
        return None
    alpha = left + 0.5 * width
    if math.isfinite(fb) and math.isfinite(gb):
        d1 = ga + gb - 3.0 * (fa - fb) / (a - b)
        disc = d1 * d1 - ga * gb
        if disc >= 0:
            d2 = math.copysign(math.sqrt(disc), b - a)
            denominator = gb - ga + 2.0 * d2
            if denominator != 0:
                guess = b - (b - a) * (gb + d2 - d1) / denominator
                if math.isfinite(guess):
                    alpha = guess
    return min(max(alpha, left + 0.1 * width), right - 0.1 * width)


def _orthant_backtrack(evaluate, theta, value, pg, direction, l1, step, first):
    """OWL-QN's line search: trial points θ + α·d projected onto the orthant of θ (sign of
    θᵢ, or of −pgᵢ where θᵢ = 0), α shrunk until F(x) ≤ F(θ) + c₁·pg·(x − θ); the trial's
    (x, F, ∇J), or None when the step no longer moves θ."""
    orthant = np.where(theta != 0, np.sign(theta), -np.sign(pg))
    shrink = 0.1 if first else 0.5
    for _ in range(4 * LINE_SEARCH_MAX):
        point = theta + step * direction
        point[l1.mask] = np.where(point[l1.mask] * orthant[l1.mask] > 0, point[l1.mask], 0.0)
        if np.array_equal(point, theta):
            return None
        cost, grad = evaluate(point)[:2]
        total = float(cost) + l1.value(point)
        if total <= value + WOLFE_C1 * float(pg @ (point - theta)):
            return point, total, grad
        step *= shrink
    return None


def newton(
    evaluate: Evaluate,
    state: SolverState,
    max_iter: int,
    tol: float | StopRule,
    callback: Callback | None = None,
) -> SolverState:
    """Newton's method (IRLS): each pass also sums Xᵀ·diag(a(1−a))·X, the driver solves
    H·Δ = g and steps θ := θ − Δ, halving the step while the cost rises.

    Same stopping rule as gradient descent, usually reached in ten or so passes.
    ``loss_history`` holds the cost at every accepted point. A singular or nearly
    singular Hessian (constant, duplicated or collinear columns) takes the minimum-norm
    step (``newton_step``): predictions then reach the optimum, which is unique even when
    the coefficients are not.
    """
    rule = _rule(tol)
    x = state.params.copy()
    previous, step = None, None  # (cost, point) before the last step, and that step
    while True:
        cost, grad, hessian = evaluate(x)
        if previous is not None and cost > previous[0]:
            if np.max(np.abs(step)) <= 1e-15 * max(1.0, np.max(np.abs(previous[1]))):
                x = previous[1]  # no step along Δ lowers the cost: stop at the best point
                state.status = state.status or STALLED
                return _finish(state)
            step = step / 2  # back off along the same direction: the cost rose
            x = previous[1] - step
            continue
        _record(state, x, cost, grad, NO_L1.measure, rule, callback)
        if state.status or state.n_iter >= max_iter:
            return _finish(state)
        step = newton_step(hessian, grad)
        previous = (cost, x)
        x = x - step
        state.n_iter += 1


def newton_step(hessian: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Δ with H·Δ = g: by Cholesky when H is safely positive definite, else the
    minimum-norm least-squares solution (singular values below 1e-12 of the largest are
    treated as zero), as a rank-deficient design needs."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    scale = np.sqrt(np.maximum(np.diag(hessian), 1e-150))  # its outer product stays > 0
    try:
        factor = cho_factor(hessian / np.outer(scale, scale))
        diagonal = np.abs(np.diag(factor[0]))
        if diagonal.min() > 1e-6 * diagonal.max():  # condition number below ~1e12
            return cho_solve(factor, grad / scale) / scale
    except (LinAlgError, ValueError):
        pass
    return np.linalg.lstsq(hessian, grad, rcond=1e-12)[0]
