"""Every setting of a run, with its default, and its TOML file, so that a report can be
rerun from its own folder.

:class:`FitJobConfig` holds the main job's settings (what ``bayes-pmf fit`` runs) and
:class:`ReportConfig` a report's; the file looks like

    [job]                    # every field of FitJobConfig; absent keys take defaults
    n_factors = 10
    seed = 0
    methods = ["als", "gibbs"]
    ...
    [report]
    title = "PMF on the embedded MovieLens"
    crosscheck = true        # include the PyMC-MAP vs NumPy-ALS cross-check

Reading uses the standard library's ``tomllib``; writing needs only flat tables of
strings, numbers, booleans and lists of strings, so it is done here rather than by a
new dependency.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.ratings import RatingScale, whole_steps
from ..engines.implicit import MAX_RANK, implicit_bases_bytes
from ..engines.parallel import MEMORY_SHARE
from ..errors import ConfigError, RatingsDataError, check_count, check_seed
from ..model.params import item_tag_sets, item_tag_vocabulary, user_tag_vocabulary
from ..model.spec import (
    DEFAULT_FACTORS,
    DEFAULT_LAMBDA,
    DEFAULT_LAMBDA_BIAS,
    DEFAULT_LAMBDA_NO_BIAS,
    DEFAULT_POSTERIOR_PRIOR,
    LIKELIHOODS,
    LINKS,
    LOGIT_SIGMA,
    ORDINAL_LINKS,
    THRESHOLDS,
    PMFSpec,
)

METHOD_NAMES = ("als", "map", "gibbs", "nuts", "advi", "constrained")
IMPLICIT_CHOICES = ("auto", "none", "users", "items", "both")
# item_features="auto": the item column used when the data has it
AUTO_ITEM_FEATURES = "genres"
# user_features="auto": the users' columns with fewer distinct values than the training
# users over this (an id-like column such as a zip code is left out)
AUTO_USER_FEATURE_SHARE = 5
# implicit="auto": feedback on both sides when min(users, items) is at most this, none
# above it. The Gibbs sampler's exact implicit-feedback step eigendecomposes an r x r
# matrix per side and chain (r = min(users, items)): at r = 4,000 that is seconds and
# about 0.6 GB per chain process; at the engine's limit of 10,000 it measured 7.9 GB and
# minutes of set-up per chain on 10^7 ratings, beyond a 2-core, 4 GB run.
AUTO_IMPLICIT_MAX_RANK = 4_000
IDENTITY_ONLY_METHODS = ("als", "gibbs", "constrained")
INVALID_CHOICES = ("error", "drop")
DUPLICATES_CHOICES = ("error", "mean", "last")


def check_scale(scale) -> None:
    """A ConfigError naming ``scale`` unless it is (min, max, step) of finite numbers
    that make a rating scale (:class:`RatingScale`'s checks) on whole steps."""
    if not (isinstance(scale, (tuple, list)) and len(scale) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in scale)):
        raise ConfigError(f"scale must be three numbers, (min, max, step), got {scale!r}",
                          setting="scale")
    low, high, step = scale
    try:
        RatingScale.of(scale)
    except RatingsDataError:  # its words would say "scale", which the CLI makes a flag
        if low < high and step > 0 and not whole_steps(low, high, step):
            raise ConfigError(f"scale's step {step:g} must divide max - min = {high - low:g} "
                              f"into whole steps, got (min, max, step) = {tuple(scale)!r}",
                              setting="scale") from None
        raise ConfigError(f"scale must have min < max and a step > 0, got (min, max, step) "
                          f"= {tuple(scale)!r}", setting="scale") from None


@dataclass(frozen=True)
class FitJobConfig:
    """Every setting of a main-job run (written into metrics.json as is)."""

    data: str | None = None  # None: the embedded MovieLens
    train: str | None = None
    test: str | None = None
    # an items file (CSV/TSV with a header, one row per item: e.g. MovieLens' movies.csv)
    # whose columns describe the items: titles, and genres for item features
    items: str | None = None
    # a users file (a CSV/TSV with a header, or MovieLens' u.user / users.dat) whose
    # columns describe the users: demographics for user features
    users: str | None = None
    # How the ratings files are read (data.load_ratings): the rating scale, (min, max,
    # step), None for the layout's (MovieLens') or one inferred from the ratings; and what
    # happens to a row whose rating is missing, not a number or off the scale ("error":
    # the run stops, naming it; "drop": it is left out and counted in metrics.json) and
    # to a (user, item) pair rated twice ("error", or "mean" / "last" merge them).
    scale: tuple[float, float, float] | None = None
    invalid: str = "error"
    duplicates: str = "error"
    n_factors: int = DEFAULT_FACTORS
    seed: int = 0
    test_fraction: float = 0.1
    methods: tuple[str, ...] = ("als", "gibbs")
    lambda_: float = DEFAULT_LAMBDA
    lambda_no_bias: float = DEFAULT_LAMBDA_NO_BIAS
    lambda_bias: float = DEFAULT_LAMBDA_BIAS
    max_sweeps: int = 200
    tol: float = 1e-6
    # per chain, for the sampling methods: 4 Gibbs chains x (600 + 2,000) sweeps from
    # overdispersed starts converge on the embedded MovieLens (the draws memory limit
    # below keeps every 2nd of the 2,000). The ordinal model needs them: max R-hat over
    # the verdict's 100 quantities, split seed 0, chain seeds 0 / 1 / 2, was 1.024 /
    # 1.011 / 1.025 after 300 + 1,000 sweeps, 1.008 / 1.014 / 1.010 after 600 + 1,000
    # (min bulk ESS 420-470 of 4,000: R-hat's own noise straddles 1.01), and 1.008 with
    # ESS 647 on seed 1 after 600 + 2,000 (benchmarks/README.md). The Gaussian model
    # converged after 300 + 1,000 (R-hat 1.009, benchmarks/convergence.py).
    draws: int = 2000
    tune: int = 600
    chains: int = 4
    thin: int = 1  # Gibbs keeps every thin-th sweep after burn-in
    # Large data (see sampling_plan): a run whose Gibbs chains together would visit more
    # than sweep_budget ratings (training ratings x sweeps x chains) has its chains
    # shortened, and posterior draws held in memory are limited to draws_memory_gb by
    # keeping every k-th sweep; 0 turns either off. 10^9 leaves the embedded MovieLens'
    # 4 x 2,600 sweeps of 90,752 ratings (9.4e8) whole and bounds the sampler's time at
    # about what they take, whatever the data size.
    sweep_budget: float = 1.0e9
    draws_memory_gb: float = 2.0
    # The PMF paper's logistic link (fitted by map, nuts and advi) and its "map back and
    # round": held-out predictions snapped to the rating grid before they are scored.
    link: str = "identity"
    round_predictions: bool = False
    # "ordinal" (default): the ordered probit on the rating grid for the model-based
    # methods that fit it (map, gibbs, nuts, advi: their names get "-ordinal"); ALS and
    # constrained PMF stay Gaussian. It beat the Gaussian posterior on held-out log score,
    # RPS and RMSE (benchmarks/ordinal.py); "gaussian" is the Gaussian model.
    likelihood: str = "ordinal"
    # The ordinal model's cut points: "user" (default), each user's own, shrunk towards
    # the global ones (log-normal gaps, their spread learned), or "global", one set for
    # everyone. "user" won by 3-fold cross-validation on the training part (RMSE and log
    # score; benchmarks/README.md, "Per-user thresholds"); the Gaussian likelihood has
    # no cut points and ignores it.
    thresholds: str = "user"
    # The ordinal model's latent distribution: "probit" (default; every ordinal engine,
    # the Gibbs sampler included) or "logit", the ordered logit, fitted by map, nuts and
    # advi, at the logistic scale LOGIT_SIGMA whose sd is the probit's (the Gibbs
    # sampler's data augmentation is the probit's: a run with it is refused).
    ordinal_link: str = "probit"
    # Implicit feedback in the posterior model (gibbs, nuts, advi): "users" adds to each
    # user's factors the normalised sum of factors W of the items they rated (constrained
    # PMF / SVD++), "items" adds to each item's the normalised sum of factors Z of the
    # users who rated it, "both" does both (1/sqrt(count) normalisation); "none" is plain
    # BPMF. "both" won on held-out ratings (benchmarks/implicit.py; on the embedded
    # MovieLens the item side carries most of the gain: median 3 ratings per item).
    # "auto" (default) is "both" up to AUTO_IMPLICIT_MAX_RANK = min(users, items) and
    # "none" above it (the run's notes say so): the exact implicit step's set-up grows as
    # the cube of that number (see implicit_for).
    implicit: str = "auto"
    # Side information in the posterior model (gibbs, nuts, advi): the tags of an item
    # column ("Comedy|Drama") each get factors, added to the items' (V = X + ... + the
    # normalised sum of the tags' factors); an item without training ratings is then
    # predicted from its tags. "auto" (default) uses "genres" when the data's items have
    # that column (the embedded MovieLens does; won on held-out ratings of the training
    # part, benchmarks/README.md "Item features"), "none" nothing, any other value that
    # column (an error before any fit if the data lacks it).
    item_features: str = "auto"
    # The same for users, from the users file's columns ("gender,occupation": each value
    # a tag "column=value"): "auto" (default) every column of the users' information with
    # fewer distinct values than a fifth of the training users (MovieLens 100k's u.user:
    # age, gender, occupation; not the zip code) and nothing without a users file, "none"
    # nothing, else the columns named, comma-separated.
    user_features: str = "auto"
    # The features' tags also give the biases their prior means (PMFSpec.tag_biases: a
    # genre's own shift of its items' biases, learned; a cold item's prediction moves
    # with it). Off by default; `bayes-pmf select --posterior --tag-biases off on`
    # compares it by cross-validation on the training part.
    tag_biases: bool = False
    progress: bool = field(default=True, compare=False)  # display only, not a setting
    # Where ALS and the Gibbs sampler run (not a setting: the numbers do not depend on
    # it): None in this process, "tcp://HOST:PORT" an existing Dask scheduler, "local:N"
    # a Dask LocalCluster of N worker processes started for the run.
    dask: str | None = field(default=None, compare=False)
    # With dask: True runs each Gibbs chain whole as one Dask task, False every
    # half-step's row blocks as tasks, None chooses from the data and the cluster
    # (engines.dask_executor.chain_placement). The same numbers either way: not a setting.
    dask_chains: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.train is None) != (self.test is None):
            raise ConfigError("train and test go together: give both or neither",
                              setting=("train", "test"))
        if self.data is not None and self.train is not None:
            raise ConfigError("give either data or train and test, not both",
                              setting=("data", "train", "test"))
        check_count("n_factors", self.n_factors)
        check_seed(self.seed, "seed")
        if self.scale is not None:
            check_scale(self.scale)
        for name, choices in (("invalid", INVALID_CHOICES), ("duplicates", DUPLICATES_CHOICES),
                              ("link", LINKS), ("likelihood", LIKELIHOODS),
                              ("thresholds", THRESHOLDS), ("ordinal_link", ORDINAL_LINKS),
                              ("implicit", IMPLICIT_CHOICES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {choices}, got "
                                  f"{getattr(self, name)!r}", setting=name)
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}",
                              setting="test_fraction")
        for name in ("sweep_budget", "draws_memory_gb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number >= 0 (0: no limit), got "
                                  f"{value!r}", setting=name)
        for name in ("lambda_", "lambda_no_bias", "lambda_bias"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.rstrip('_')} must be > 0, got {getattr(self, name)!r}",
                                  setting=name.rstrip("_"))
        for name in ("thin", "draws", "chains", "max_sweeps"):
            check_count(name, getattr(self, name))
        check_count("tune", self.tune, minimum=0)
        unknown = set(self.methods) - set(METHOD_NAMES)
        if unknown:
            raise ConfigError(f"unknown method(s) {sorted(unknown)}; choose from "
                              f"{sorted(METHOD_NAMES)}", setting="methods")
        if not isinstance(self.round_predictions, bool):
            raise ConfigError(f"round_predictions must be true or false, got "
                              f"{self.round_predictions!r}", setting="round_predictions")
        if self.ordinal_link == "logit":
            if self.likelihood != "ordinal":
                raise ConfigError("the ordered logit (ordinal_link='logit') is a link of the "
                                  "ordinal likelihood; this run has likelihood="
                                  f"{self.likelihood!r}", setting="ordinal_link")
            if "gibbs" in self.methods:
                raise ConfigError(
                    "the ordered logit (ordinal_link='logit') is fitted by map, nuts and "
                    "advi; the Gibbs sampler's data augmentation is the ordered probit's: "
                    "choose e.g. --method als map advi", setting="methods")
        if not isinstance(self.item_features, str) or not self.item_features.strip():
            raise ConfigError("item_features must be 'auto', 'none' or the name of an item "
                              f"column of tags, got {self.item_features!r}",
                              setting="item_features")
        if not isinstance(self.user_features, str) or not self.user_features.strip():
            raise ConfigError("user_features must be 'auto', 'none' or user column names, "
                              f"comma-separated, got {self.user_features!r}",
                              setting="user_features")
        if self.user_features not in ("auto", "none"):
            PMFSpec(user_features=self.user_features)  # the names' form, checked here
        if not isinstance(self.tag_biases, bool):
            raise ConfigError(f"tag_biases must be true or false, got {self.tag_biases!r}",
                              setting="tag_biases")
        if not (self.dask_chains is None or isinstance(self.dask_chains, bool)):
            raise ConfigError(f"dask_chains must be true, false or unset, got "
                              f"{self.dask_chains!r}", setting="dask_chains")
        if self.likelihood == "ordinal" and self.link != "identity":
            raise ConfigError("the logistic link belongs to the Gaussian model (the ordinal "
                              "likelihood has its own link to the rating grid): choose "
                              "likelihood='gaussian' with it", setting="likelihood")
        identity_only = sorted(set(self.methods) & set(IDENTITY_ONLY_METHODS))
        if self.link == "logistic" and identity_only:
            raise ConfigError(
                f"the logistic link is fitted by map, nuts and advi; {identity_only} "
                "fit(s) the identity link only (ALS and the Gibbs sampler are conjugate for "
                "it): choose e.g. --method map", setting="methods")

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings["methods"] = list(self.methods)
        settings.pop("progress")
        settings.pop("dask")
        settings.pop("dask_chains")
        return settings

    @property
    def pmf_spec(self) -> PMFSpec:
        """The point model: PMF with biases and fixed priors at the run's penalties (ALS
        fits its Gaussian version, see :attr:`gaussian_spec`)."""
        if self.likelihood != "ordinal":
            return self.gaussian_spec
        spec = self.gaussian_spec.with_(likelihood="ordinal", thresholds=self.thresholds,
                                        ordinal_link=self.ordinal_link)
        # the logit's scale gives the latent the probit's sd; the priors stay
        return spec.with_(sigma=LOGIT_SIGMA) if self.ordinal_link == "logit" else spec

    @property
    def gaussian_spec(self) -> PMFSpec:
        """The point model with the Gaussian likelihood (what ALS fits)."""
        return PMFSpec.from_lambdas(self.n_factors, self.lambda_, biases=True,
                                    lambda_user_bias=self.lambda_bias,
                                    lambda_item_bias=self.lambda_bias, link=self.link)

    def method_name(self, name: str) -> str:
        """A model-based method's name in this run ("-ordinal" for the ordinal model,
        "-ordinal-logit" for the ordered logit)."""
        if self.likelihood != "ordinal":
            return name
        return f"{name}-ordinal" + ("-logit" if self.ordinal_link == "logit" else "")

    @property
    def pmf_spec_no_bias(self) -> PMFSpec:
        """PMF without biases (the PMF paper's model), fixed priors."""
        return PMFSpec.from_lambdas(self.n_factors, self.lambda_no_bias, biases=False)

    @property
    def posterior_spec(self) -> PMFSpec:
        """The posterior model: the point model with zero-mean Wishart hyperpriors on the
        factor precisions, Gamma hyperpriors on the bias precisions and a learned noise
        (the ordinal model keeps sigma fixed: it sets the latent scale), with the run's
        implicit feedback (``implicit``; "auto" taken as "both", its answer on data of
        up to AUTO_IMPLICIT_MAX_RANK users or items: :meth:`posterior_spec_for` applies
        the rule to a data set)."""
        return self._posterior_spec("both" if self.implicit == "auto" else self.implicit)

    def posterior_spec_for(self, train) -> PMFSpec:
        """:attr:`posterior_spec` for the training ratings ``train``, "auto" resolved by
        :meth:`implicit_for`, :meth:`item_features_for` and :meth:`user_features_for` (a
        ConfigError if a column named is missing or carries no tag)."""
        spec = self._posterior_spec(self.implicit_for(train.n_users, train.n_items))
        column = self.item_features_for(train)
        if column is not None:
            item_tag_vocabulary(train, column)  # the data has the tags: checked here
        columns = self.user_features_for(train)
        if columns is not None:
            user_tag_vocabulary(train, columns.split(","))
        if self.tag_biases and column is None and columns is None:
            raise ConfigError("tag_biases gives the biases their tags' prior means, and this "
                              "run has no item or user features (the items have no "
                              f"{self.item_features if self.item_features != 'auto' else 'genres'}"
                              " column, and no users file names user columns): give "
                              "--item-features COLUMN or --users FILE, or drop --tag-biases",
                              setting="tag_biases")
        return spec.with_(item_features=column, user_features=columns,
                          tag_biases=self.tag_biases)

    def user_features_for(self, train) -> str | None:
        """The user columns (comma-separated) whose values a run on ``train`` adds to the
        users' factors: the setting, None for "none", and for "auto" every column of
        ``train.user_info`` with at least one value and fewer distinct values than a fifth
        of the training users (None without user information)."""
        if self.user_features == "none":
            return None
        if self.user_features != "auto":
            return PMFSpec(user_features=self.user_features).user_features
        info = getattr(train, "user_info", None)
        if info is None:
            return None
        known = info.reindex(train.user_ids)
        columns = []
        for column in known.columns:
            values = known[column].dropna().astype(str).str.strip()
            distinct = values[values != ""].nunique()
            if 0 < distinct < max(2, train.n_users / AUTO_USER_FEATURE_SHARE):
                columns.append(str(column))
        return ",".join(columns) or None

    def item_features_for(self, train) -> str | None:
        """The item column whose tags a run on ``train`` adds to the items' factors: the
        setting, None for "none", and for "auto" "genres" when ``train``'s items have
        that column with at least one tag, else None."""
        if self.item_features == "none":
            return None
        if self.item_features != "auto":
            return self.item_features
        info = getattr(train, "item_info", None)
        if info is None or AUTO_ITEM_FEATURES not in info:
            return None
        tagged = any(item_tag_sets(train.item_ids, info, AUTO_ITEM_FEATURES))
        return AUTO_ITEM_FEATURES if tagged else None

    def implicit_for(self, n_users: int, n_items: int) -> str:
        """The implicit feedback a run on ``n_users`` x ``n_items`` fits: the setting, or
        for "auto" "both" when min(users, items) <= AUTO_IMPLICIT_MAX_RANK, else "none"."""
        if self.implicit != "auto":
            return self.implicit
        return "both" if min(n_users, n_items) <= AUTO_IMPLICIT_MAX_RANK else "none"

    def _posterior_spec(self, implicit: str) -> PMFSpec:
        return self.pmf_spec.with_(prior=DEFAULT_POSTERIOR_PRIOR,
                                   noise="fixed" if self.likelihood == "ordinal" else "learned",
                                   constrained=implicit in ("users", "both"),
                                   implicit_items=implicit in ("items", "both"),
                                   implicit_norm="sqrt")


# Bytes per value.
_FLOAT = 8
_STORED_FLOAT = 4  # the Gibbs sampler stores per-user and per-item draws in float32


@dataclass(frozen=True)
class SamplingPlan:
    """The Gibbs sampler's draws, burn-in and thinning for one run's data, the implicit
    feedback its model has (``implicit``: "auto" resolved), and why they differ from the
    settings (``notes``, empty when they do not)."""

    draws: int
    tune: int
    thin: int
    notes: tuple[str, ...] = ()
    implicit: str = "none"

    def as_dict(self) -> dict:
        return {"draws": self.draws, "tune": self.tune, "thin": self.thin,
                "implicit": self.implicit, "notes": list(self.notes)}


# The shortest chains the sweep budget may leave: burn-in from the ALS start (near the
# posterior's bulk on large data) and draws, enough for R-hat and ESS to be computed.
MIN_BUDGET_TUNE, MIN_BUDGET_DRAWS = 10, 20


def _nth(n: int) -> str:
    """2nd, 3rd, 4th, 11th, 21st ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def stored_rows(implicit: str, n_users: int, n_items: int) -> int:
    """Rows of factors a posterior draw stores: users and items, and with implicit
    feedback also W (one per item) and Z (one per user)."""
    return (n_users + n_items + (n_items if implicit in ("users", "both") else 0)
            + (n_users if implicit in ("items", "both") else 0))


def stored_values(config: FitJobConfig, implicit: str, n_users: int, n_items: int,
                  levels: int) -> int:
    """Values a posterior draw stores: :func:`stored_rows` x (d + 1), and with per-user
    thresholds every user's K - 1 cut points (``levels``: the grid's K)."""
    values = stored_rows(implicit, n_users, n_items) * (config.n_factors + 1)
    if config.likelihood == "ordinal" and config.thresholds == "user":
        values += n_users * max(levels - 1, 0)
    return values


def sampling_plan(config: FitJobConfig, n_train: int, n_users: int,
                  n_items: int, *, levels: int = 10) -> SamplingPlan:
    """What the main job's Gibbs chains run on ``n_train`` training ratings of ``n_users``
    users and ``n_items`` items. The settings as they are, unless

    * implicit is "auto" and min(users, items) is above AUTO_IMPLICIT_MAX_RANK: then the
      model has no implicit feedback (a note says so; an explicit implicit setting
      above the sampler's own limit is refused here, before any work);
    * the chains together would visit more than ``sweep_budget`` ratings (n_train x
      sweeps x chains): then burn-in and draws shrink by the same factor (to at least
      MIN_BUDGET_TUNE and MIN_BUDGET_DRAWS sweeps), which bounds the sampler's time at
      about the budget whatever the data size (the embedded MovieLens is below it,
      4 x 2,600 sweeps of 90,752 ratings; 10^6 ratings run 4 x (65 + 214));
    * the kept draws of all chains would hold more than ``draws_memory_gb`` (U, V and
      biases, and the implicit factors W, Z: chains x draws x rows x (d + 1)
      single-precision values; 6.8 GB for the embedded MovieLens' 4 x 2,000 with implicit
      feedback on both sides; with per-user thresholds also every user's cut points,
      ``levels`` - 1 of them): then every k-th sweep is kept, the smallest k that fits,
      with the same number of sweeps (draws / k kept per chain).
    """
    draws, tune, thin, notes = config.draws, config.tune, config.thin, []
    implicit = config.implicit_for(n_users, n_items)
    rank = min(n_users, n_items)
    if config.implicit == "auto" and implicit == "none":
        notes.append(
            f"the model has no implicit feedback: implicit = \"auto\" fits it up to "
            f"min(users, items) = {AUTO_IMPLICIT_MAX_RANK:,}, and this data has {rank:,} "
            "(the exact implicit step's set-up grows as its cube; implicit = \"both\" "
            f"asks for it up to {MAX_RANK:,})")
    elif implicit != "none" and rank > MAX_RANK:
        raise ConfigError(
            f"implicit = {implicit!r}: the Gibbs sampler's exact implicit-feedback step "
            f"works through a basis of min(users, items) vectors, at most {MAX_RANK:,}, and "
            f"this data has {rank:,}; choose implicit \"none\" (--implicit none) or "
            "\"auto\"", setting="implicit")
    sweeps = tune + draws * thin
    visits = n_train * sweeps * config.chains
    if config.sweep_budget and visits > config.sweep_budget:
        share = config.sweep_budget / visits
        tune = min(tune, max(round(tune * share), MIN_BUDGET_TUNE))
        draws = min(draws, max(round(draws * share), MIN_BUDGET_DRAWS))
        notes.append(
            f"{config.chains} chains x {sweeps:,} sweeps x {n_train:,} training ratings is "
            f"above the sweep budget of {config.sweep_budget:.3g} rating visits: {tune} "
            f"burn-in sweeps and {draws} draws per chain instead of {config.tune} and "
            f"{config.draws} (a larger sweep_budget, or 0, runs longer chains)")
    stored = config.chains * draws * stored_values(config, implicit, n_users, n_items,
                                                   levels) * _STORED_FLOAT
    budget = config.draws_memory_gb * 2**30
    if budget and stored > budget:
        keep_every = math.ceil(stored / budget)
        draws, thin = max(1, draws // keep_every), thin * keep_every
        notes.append(
            f"the posterior draws would hold {stored / 2**30:.1f} GB, above draws_memory_gb "
            f"= {config.draws_memory_gb:g}: every {_nth(thin)} sweep is kept ({draws} draws per "
            "chain from the same number of sweeps)")
    return SamplingPlan(draws, tune, thin, tuple(notes), implicit)


def grid_levels(scale) -> int:
    """The number of rating levels of a bounded grid (10 for any other scale: the
    memory plans' half-star guess)."""
    if scale.bounded and scale.step:
        return len(scale.values())
    return 10


def memory_estimate(config: FitJobConfig, split) -> list[tuple[str, int]]:
    """The largest memory a run with these settings will hold, by part (bytes): the
    posterior draws of the sampling methods, ALS's Gram matrices of one row block per
    thread, the held-out predictive draws, the implicit-feedback step's bases."""
    train, n_test = split.train, split.test.n_ratings
    d, rows = config.n_factors, train.n_users + train.n_items
    parts = [("factor matrices", 2 * rows * (d + 1) * _FLOAT),
             ("ALS normal equations (2 threads x 4,096 rows x (d+1)^2)",
              2 * 4096 * (d + 1) ** 2 * _FLOAT),
             # result.predictive: blocks of at most 2^26 draws x pairs (x3 while
             # summarised) and at most 2^24 stored draws
             ("held-out predictive draws (summarised in blocks)",
              (3 * min(1000 * n_test, 2**26) + min(1000 * n_test, 2**24)) * _FLOAT)]
    sampled = [m for m in config.methods if m in ("gibbs", "nuts", "advi")]
    if sampled:
        chains = 1 if sampled == ["advi"] else config.chains
        draws, size = config.draws, _FLOAT
        implicit = config.implicit_for(train.n_users, train.n_items)
        if sampled == ["gibbs"]:
            draws, size = sampling_plan(config, train.n_ratings, train.n_users,
                                        train.n_items,
                                        levels=grid_levels(train.scale)).draws, _STORED_FLOAT
        stored = stored_rows(implicit, train.n_users, train.n_items)
        values = stored_values(config, implicit, train.n_users, train.n_items,
                               grid_levels(train.scale))
        parts.append((f"posterior draws ({chains} chains x {draws:,} draws x "
                      f"{stored:,} rows of users, items and implicit factors x (d+1)"
                      + (", and every user's cut points" if values > stored * (d + 1)
                         else "") + ")",
                      chains * draws * values * size))
        if "gibbs" in sampled and implicit != "none":
            # in every chain process
            rank, processes = min(train.n_users, train.n_items), min(config.chains,
                                                                     os.cpu_count() or 1)
            parts.append((f"implicit-feedback bases ({processes} chain processes x 5 x "
                          f"{rank:,}^2)",
                          processes * implicit_bases_bytes(train.n_users, train.n_items)))
    return parts


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux' MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_memory(config: FitJobConfig, split) -> None:
    """Refuse, before any fitting, a run whose estimate exceeds the available memory,
    naming the figure and the setting to change."""
    available = available_memory()
    parts = memory_estimate(config, split)
    needed = sum(size for _, size in parts)
    if available is None or needed <= MEMORY_SHARE * available:
        return
    what, size = max(parts, key=lambda part: part[1])
    raise ConfigError(
        f"this run would need about {needed / 2**30:.1f} GB of memory, {size / 2**30:.1f} GB "
        f"of it for the {what}; {available / 2**30:.1f} GB is available. Lower n_factors, "
        "draws or chains (or thin the chains), or fit fewer methods", setting="n_factors")



@dataclass(frozen=True)
class ReportConfig:
    """A report: the main job's settings plus what the report adds."""

    job: FitJobConfig = field(default_factory=FitJobConfig)
    title: str = "Probabilistic Matrix Factorization: reproducibility report"
    crosscheck: bool = True
    # cross-validate the posterior model's variants on the training part and show the
    # comparison (workflows.report.MODEL_SELECTION_GRID)
    model_selection: bool = False

    def as_toml(self) -> str:
        job = {k: v for k, v in self.job.as_dict().items() if v is not None}
        for name in ("data", "train", "test", "items"):
            if name in job:  # absolute, so the config reads the same from any folder
                job[name] = str(Path(job[name]).resolve())
        return ("# bayes_pmf report settings: rerun with\n"
                "#   bayes-pmf report --config config.toml --out DIR\n"
                + _table("job", job) + "\n"
                + _table("report", {"title": self.title, "crosscheck": self.crosscheck,
                                    "model_selection": self.model_selection}))


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the non-finite setting {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write a setting of type {type(value).__name__} to TOML")


def _table(name: str, values: dict) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_value(v)}\n" for key, v in values.items())


def _job_from_table(table: dict, path: Path) -> FitJobConfig:
    known = {f.name for f in dataclasses.fields(FitJobConfig)} - {"progress", "dask"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown} in [job]; "
                          f"known are {sorted(known)}")
    values = dict(table)
    if "methods" in values:
        if not isinstance(values["methods"], list):
            raise ConfigError(f"{path}: [job] methods must be a list such as [\"als\"], "
                              f"got {values['methods']!r}")
        values["methods"] = tuple(values["methods"])
    if isinstance(values.get("scale"), list):
        values["scale"] = tuple(values["scale"])
    for name in ("test_fraction", "lambda_", "lambda_no_bias", "lambda_bias", "tol"):
        if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
            values[name] = float(values[name])
    for name in ("data", "train", "test", "items"):
        # Paths in a config file are relative to the file, so a report folder can move.
        if isinstance(values.get(name), str) and not Path(values[name]).is_absolute():
            values[name] = str((path.parent / values[name]).resolve())
    try:
        return FitJobConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{path}: bad [job] settings: {exc}") from None


def read_config(path: str | Path) -> ReportConfig:
    """A :class:`ReportConfig` from a TOML file written by :meth:`ReportConfig.as_toml`
    (or by hand); unknown keys are errors, missing keys take the defaults."""
    path = Path(path)
    try:
        # utf-8-sig: a byte-order mark (Windows Notepad) is not a TOML statement
        document = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"job", "report"})
    if extra:
        raise ConfigError(f"{path}: unknown table(s) {extra}; expected [job] and [report]")
    report = document.get("report", {})
    unknown = sorted(set(report) - {"title", "crosscheck", "model_selection"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown} in [report]")
    defaults = ReportConfig()
    return ReportConfig(job=_job_from_table(document.get("job", {}), path),
                        title=str(report.get("title", defaults.title)),
                        crosscheck=bool(report.get("crosscheck", defaults.crosscheck)),
                        model_selection=bool(report.get("model_selection",
                                                        defaults.model_selection)))
