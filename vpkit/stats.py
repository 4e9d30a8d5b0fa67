"""Deciding a claim with its uncertainty: a margin, a 95% interval and one of four verdicts.

A claim names its comparison before the run: which runs, which metric, the direction (``">"``, ``"<"``) and a
threshold, or an equivalence margin (``"~"``: "changes X by at most m"). :func:`decide` turns the interval into
the verdict:

* **holds** - the whole interval lies on the claimed side of the threshold (inside ``[-m, m]`` for ``"~"``);
* **does not hold** - the whole interval lies on the other side (outside ``[-m, m]`` for ``"~"``);
* **inconclusive** - the interval contains the threshold (straddles a margin edge for ``"~"``);
* **not testable here** - :func:`not_testable`, with the reason (by construction, chance for every method, ...).

Intervals, by design of the data:

* :func:`paired_bootstrap` - both sides evaluated on the same test examples: resample examples, keep pairs
  (``scipy.stats.bootstrap(..., paired=True)``);
* :func:`hierarchical_bootstrap` - several seeds, each on the same examples: resample seeds, then examples within
  the drawn seeds, pairs kept (written here: scipy has no two-level resampling);
* :func:`binomial_vs_chance` - one accuracy against chance: exact Clopper-Pearson interval (``scipy.stats.binomtest``);
* :func:`correlation_bootstrap` - a correlation over points: bootstrap over the points;
* :func:`exact` - counts and other exact values: the interval is the value itself.

Every resampling uses a fixed seed (:data:`BOOTSTRAP_SEED`), so the files that carry the intervals are
reproducible.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)
DIRECTIONS = (">", "<", "~")
BOOTSTRAP_SEED = 20261201
N_RESAMPLES = 4000
LEVEL = 0.95


@dataclass
class Decision:
    """What ``metrics.json`` stores beside a claim."""

    verdict: str
    margin: float | None  # the estimate of the compared quantity (e.g. accuracy difference)
    ci_low: float | None
    ci_high: float | None
    n_examples: int | None
    n_seeds: int | None
    test: str  # how the interval was computed
    reason: str = ""
    unit: str = ""  # of margin / ci (e.g. "points": accuracy differences times 100)
    direction: str | None = None  # the claimed side: ">", "<" or "~" (None: not recorded)
    threshold: float | None = None  # what the interval is held against; for "~" the equivalence margin m (|x| <= m)

    def scaled(self, factor: float = 100.0, unit: str = "points") -> "Decision":
        """The same decision with margin, interval and threshold multiplied by ``factor`` (fractions -> percentage
        points)."""
        f = lambda v: None if v is None else float(v) * factor  # noqa: E731
        return Decision(self.verdict, f(self.margin), f(self.ci_low), f(self.ci_high), self.n_examples, self.n_seeds,
                        self.test, self.reason, unit, self.direction, f(self.threshold))

    @property
    def claimed(self) -> str:
        """The claimed relation as text: ``"> 0"``, ``"< 1"``, ``"within ±2"``; ``""`` when not recorded."""
        return claimed_text(self.direction, self.threshold)

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    @property
    def slack(self) -> float:
        """How far the whole interval lies inside the claimed side (negative: how far it reaches out of it):
        ``ci_low - t`` for ``">"``, ``t - ci_high`` for ``"<"``, ``m - max(|ci_low|, |ci_high|)`` for ``"~"``;
        ``ci_low`` when the claimed side is not recorded. :func:`every` reports the case with the least."""
        if self.direction == "<":
            return self.threshold - self.ci_high
        if self.direction == "~":
            return self.threshold - max(abs(self.ci_low), abs(self.ci_high))
        return self.ci_low - (self.threshold or 0.0)

    def as_dict(self) -> dict:
        return {**asdict(self), "holds": self.holds}


def verdict(ci_low: float, ci_high: float, *, direction: str = ">", threshold: float = 0.0,
            margin: float | None = None) -> str:
    """The verdict of an interval for ``estimate direction threshold`` (or ``|estimate| <= margin`` for ``"~"``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; allowed: {DIRECTIONS}")
    if not ci_low <= ci_high:
        raise ValueError(f"ci_low={ci_low} must be <= ci_high={ci_high}")
    if direction == "~":
        if margin is None or margin <= 0:
            raise ValueError(f"an equivalence claim needs margin > 0, got margin={margin!r}")
        if -margin <= ci_low and ci_high <= margin:
            return HOLDS
        if ci_high < -margin or ci_low > margin:
            return FAILS
        return INCONCLUSIVE
    above, below = ci_low > threshold, ci_high < threshold
    if direction == ">":
        return HOLDS if above else FAILS if below else INCONCLUSIVE
    return HOLDS if below else FAILS if above else INCONCLUSIVE


def claimed_text(direction: str | None, threshold: float | None) -> str:
    """``"> 40"``, ``"< 0"``, ``"within ±5"`` (``"~"``: ``threshold`` is the equivalence margin); ``""`` when
    ``direction`` is None (a record written before claims kept their threshold)."""
    if direction is None or threshold is None:
        return ""
    t = f"{float(threshold):.4g}"
    return f"within ±{t}" if direction == "~" else f"{direction} {t}"


def _decision(est, lo, hi, *, direction, threshold, margin, n_examples, n_seeds, test) -> Decision:
    return Decision(verdict(lo, hi, direction=direction, threshold=threshold, margin=margin), float(est), float(lo),
                    float(hi), n_examples, n_seeds, test, direction=direction,
                    threshold=float(margin if direction == "~" else threshold))


def _as_2d(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"expected per-example outcomes (examples,) or (seeds, examples), got shape {a.shape}")
    return a


def paired_bootstrap(a, b, *, direction: str = ">", threshold: float = 0.0, margin: float | None = None,
                     n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Decision:
    """``mean(a) - mean(b)`` over the same test examples (per-example outcomes, e.g. correct = 1.0), with a
    percentile bootstrap over examples that keeps the pairs (``scipy.stats.bootstrap``, ``paired=True``)."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"a and b must be per-example outcomes of the same >= 2 examples; got {a.shape}, {b.shape}")
    stat = lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis)  # noqa: E731
    if np.all(a - b == (a - b)[0]):  # a constant difference: the bootstrap distribution is degenerate
        d = float((a - b)[0])
        lo = hi = d
    else:
        r = bootstrap((a, b), stat, paired=True, vectorized=True, n_resamples=n_resamples, confidence_level=LEVEL,
                      method="percentile", random_state=np.random.default_rng(seed),
                      batch=max(1, 2_000_000 // len(a)))
        lo, hi = r.confidence_interval
    return _decision(a.mean() - b.mean(), lo, hi, direction=direction, threshold=threshold, margin=margin,
                     n_examples=len(a), n_seeds=1, test="paired bootstrap over test examples (95%, percentile)")


def _counts(rng, r: int, n: int) -> np.ndarray:
    """``r`` bootstrap draws of ``n`` items with replacement, as (r, n) counts (one bincount for all draws)."""
    idx = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=r * n).reshape(r, n).astype(float)


def _resampled_means(outcomes: dict, *, n_resamples: int, seed: int, chunk: int = 250):
    """Bootstrap means of several outcome arrays at once: ``outcomes`` maps ``(example_set, run)`` to a
    ``(seeds, examples)`` array. Each resample draws seeds with replacement (one draw for every array, so seed ``i``
    of one run stays paired with seed ``i`` of another), then examples with replacement within each example set (one
    draw per set, shared by every run evaluated on it: pairs kept). Returns ``{key: (n_resamples,) means}``."""
    arrays = {k: _as_2d(v) for k, v in outcomes.items()}
    seeds = {a.shape[0] for a in arrays.values()}
    if len(seeds) != 1:
        raise ValueError(f"every run needs the same number of seeds; got {sorted(seeds)}")
    s = seeds.pop()
    sizes: dict = {}
    for (es, _), a in arrays.items():
        if sizes.setdefault(es, a.shape[1]) != a.shape[1]:
            raise ValueError(f"runs on example set {es!r} have different numbers of examples")
    if min(sizes.values()) < 2:
        raise ValueError("need >= 2 examples per example set")
    rng = np.random.default_rng(seed)
    out = {k: np.empty(n_resamples) for k in arrays}
    for lo in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - lo)
        w_seed = _counts(rng, r, s)  # (r, s): how often each seed is drawn
        for es, n in sizes.items():
            w_ex = _counts(rng, r, n)  # (r, n): how often each example is drawn
            for k, a in arrays.items():
                if k[0] == es:
                    out[k][lo:lo + r] = np.einsum("rs,sr->r", w_seed, a @ w_ex.T) / (s * n)
    return out


def bootstrap_statistic(fn, outcomes: dict, *, direction: str = ">", threshold: float = 0.0,
                        margin: float | None = None, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        what: str = "") -> Decision:
    """Any statistic of mean outcomes, with the hierarchical bootstrap of :func:`_resampled_means` (seeds, then
    examples within each example set). ``outcomes``: ``{(example_set, run): (seeds, examples) array}``; ``fn`` takes
    ``{(example_set, run): mean}`` and returns the compared number (e.g. a difference of harmonic means)."""
    arrays = {k: _as_2d(v) for k, v in outcomes.items()}
    est = float(fn({k: a.mean() for k, a in arrays.items()}))
    means = _resampled_means(arrays, n_resamples=n_resamples, seed=seed)
    stats = np.array([fn({k: m[i] for k, m in means.items()}) for i in range(n_resamples)], dtype=float)
    lo, hi = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    s = next(iter(arrays.values())).shape[0]
    sizes = sorted({(k[0], a.shape[1]) for k, a in arrays.items()})
    n = sum(v for _, v in sizes)
    level = f"{s} seeds, then examples" if s > 1 else "examples"
    return _decision(est, min(lo, est), max(hi, est), direction=direction, threshold=threshold, margin=margin,
                     n_examples=n, n_seeds=s, test=f"{what + ': ' if what else ''}hierarchical bootstrap over {level} "
                     f"({' + '.join(f'{v} {k}' for k, v in sizes)}; 95%, percentile)")


def hierarchical_bootstrap(a, b=None, *, direction: str = ">", threshold: float = 0.0, margin: float | None = None,
                           n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                           seed_unit: str = "seeds") -> Decision:
    """``mean(a) - mean(b)`` for outcomes of shape (seeds, examples), all seeds on the same examples: resample
    seeds with replacement, then examples with replacement (the same example draw for ``a`` and ``b``, so pairs
    are kept). ``b=None`` compares ``a`` alone with ``threshold``. ``seed_unit`` names the first level in the
    ``test`` text (``"draws"`` when the rows are draws of the few-shot training images, not training seeds)."""
    a = _as_2d(a)
    b = np.zeros_like(a) if b is None else _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same (seeds, examples) shape; got {a.shape}, {b.shape}")
    s, n = a.shape
    if n < 2:
        raise ValueError("need >= 2 examples")
    means = _resampled_means({("test", "d"): a - b}, n_resamples=n_resamples, seed=seed)[("test", "d")]
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return _decision((a - b).mean(), lo, hi, direction=direction, threshold=threshold, margin=margin, n_examples=n,
                     n_seeds=s, test=f"hierarchical bootstrap: {s} {seed_unit}, then {n} examples (95%, percentile)")


def binomial_vs_chance(correct: int, n: int, chance: float) -> Decision:
    """One accuracy ``correct / n`` against ``chance``: the exact (Clopper-Pearson) 95% interval of the accuracy;
    holds when it lies above chance. ``margin`` is accuracy - chance."""
    from scipy.stats import binomtest

    if not 0 <= correct <= n or n < 1 or not 0 < chance < 1:
        raise ValueError(f"need 0 <= correct <= n, n >= 1, 0 < chance < 1; got {correct}, {n}, {chance}")
    ci = binomtest(int(correct), int(n), chance).proportion_ci(confidence_level=LEVEL, method="exact")
    d = _decision(correct / n, ci.low, ci.high, direction=">", threshold=chance, margin=None, n_examples=n,
                  n_seeds=1, test="exact binomial (Clopper-Pearson 95%) against chance")
    d.margin, d.ci_low, d.ci_high = correct / n - chance, ci.low - chance, ci.high - chance
    d.threshold = 0.0  # margin and interval are accuracy - chance, so the claimed side is "> 0" on that scale
    return d


def correlation_bootstrap(x, y, *, direction: str = ">", threshold: float = 0.0, method: str = "pearson",
                          n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Decision:
    """Pearson (or Spearman) correlation of paired points with a bootstrap over the points."""
    from scipy.stats import bootstrap, pearsonr, spearmanr

    if method not in ("pearson", "spearman"):
        raise ValueError(f"method={method!r}; allowed: ('pearson', 'spearman')")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 4:
        raise ValueError(f"x and y must be paired points, at least 4; got {x.shape}, {y.shape}")
    f = pearsonr if method == "pearson" else spearmanr
    stat = lambda u, v: f(u, v)[0]  # noqa: E731
    with warnings.catch_warnings():  # resamples of few points can be constant: r undefined -> a full-width bound
        warnings.simplefilter("ignore")
        r = bootstrap((x, y), stat, paired=True, vectorized=False, n_resamples=n_resamples, confidence_level=LEVEL,
                      method="percentile", random_state=np.random.default_rng(seed))
    lo, hi = np.nan_to_num(r.confidence_interval.low, nan=-1.0), np.nan_to_num(r.confidence_interval.high, nan=1.0)
    return _decision(stat(x, y), lo, hi, direction=direction, threshold=threshold, margin=None, n_examples=len(x),
                     n_seeds=None, test=f"bootstrap over {len(x)} points ({method}, 95%, percentile)")


def exact(value: float, *, direction: str = ">", threshold: float = 0.0, margin: float | None = None,
          what: str = "an exact count") -> Decision:
    """A quantity without sampling noise (a parameter count, a number of prompts used): the interval is the value."""
    v = float(value)
    return _decision(v, v, v, direction=direction, threshold=threshold, margin=margin, n_examples=None,
                     n_seeds=None, test=f"exact value ({what})")


def every(decisions: dict[str, Decision], *, what: str = "every case") -> Decision:
    """A claim over several cases ("on every dataset"): **holds** when every case holds, **does not hold** when any
    case does not hold, otherwise inconclusive. The margin, interval and threshold are those of the weakest case
    (least :attr:`Decision.slack`: for ``">"`` claims the smallest lower bound); ``test`` names it."""
    if not decisions:
        raise ValueError("every() needs at least one decision")
    ds = [d for d in decisions.values() if d.verdict != NOT_TESTABLE]
    if not ds:
        return not_testable("; ".join(f"{k}: {d.reason}" for k, d in decisions.items()))
    vs = [d.verdict for d in ds]
    v = FAILS if FAILS in vs else HOLDS if all(x == HOLDS for x in vs) else INCONCLUSIVE
    key, weakest = min(((k, d) for k, d in decisions.items() if d.verdict != NOT_TESTABLE), key=lambda kd: kd[1].slack)
    n_seeds = {d.n_seeds for d in ds}
    return Decision(v, weakest.margin, weakest.ci_low, weakest.ci_high,
                    sum(d.n_examples or 0 for d in ds) or None, n_seeds.pop() if len(n_seeds) == 1 else None,
                    f"{what}: each case by its own interval ({len(ds)} case{'s' if len(ds) > 1 else ''}; weakest: {key}; {weakest.test})",
                    unit=weakest.unit, direction=weakest.direction, threshold=weakest.threshold)


def compare(a, b=None, **kw) -> Decision:
    """``mean(a) - mean(b)`` with the right interval for the shape of the outcomes: a paired bootstrap over examples
    for one seed (1-D, or one row), the hierarchical bootstrap (seeds, then examples) for several; ``seed_unit``
    (default ``"seeds"``) names what the rows are in the ``test`` text of the latter."""
    a2 = _as_2d(a)
    if a2.shape[0] == 1:
        kw.pop("seed_unit", None)
        bb = np.zeros(a2.shape[1]) if b is None else _as_2d(b)[0]
        return paired_bootstrap(a2[0], bb, **kw)
    return hierarchical_bootstrap(a2, b, **kw)


def seed_interval(values, *, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of per-seed values (error bars, sweep summaries);
    low = high = mean when there are fewer than 2 values."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    h = float(t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


def not_testable(reason: str) -> Decision:
    """A claim this data cannot decide, with the reason (never a silent pass or fail)."""
    if not reason:
        raise ValueError("a claim that is not testable here needs its reason")
    return Decision(NOT_TESTABLE, None, None, None, None, None, "none", reason=reason)
