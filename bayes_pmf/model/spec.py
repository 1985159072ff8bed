"""PMFSpec: the whole model, read by every engine; the one place defaults are set.

Model (notation of docs/conventions: user i, item j, rating r_ij, d latent dimensions):

    r_ij ~ N(eta_ij, sigma^2)                         link="identity"
    (r_ij - r_min)/(r_max - r_min) ~ N(sigmoid(eta_ij), sigma^2)   link="logistic"
    eta_ij = mu + b_i + c_j + U_i.V_j                 (mu, b, c only when switched on)

Priors of the factors (``prior``):

    "fixed"           U_i ~ N(0, sigma_u^2 I), V_j ~ N(0, sigma_v^2 I), b_i ~ N(0, sigma_b^2),
                      c_j ~ N(0, sigma_c^2): PMF (Salakhutdinov & Mnih 2007);
    "spherical"       U_i ~ N(0, I/lambda_U), lambda_U ~ Gamma(a0, b0) (one precision per
                      side), bias precisions ~ Gamma(a0, b0): the paper's adaptive prior;
    "diagonal"        one Gamma precision per latent dimension;
    "wishart"         U_i ~ N(0, Lambda_U^-1), Lambda_U ~ Wishart(W0 = I, nu0 = d);
    "normal-wishart"  U_i ~ N(mu_U, Lambda_U^-1), (mu_U, Lambda_U) ~ Normal-Wishart(0, beta0,
                      I, d): Bayesian PMF (Salakhutdinov & Mnih 2008).

The likelihood (``likelihood``): "gaussian" (above) or "ordinal", the ordered probit on the
rating grid v_1 < ... < v_K (Albert & Chib 1993):

    r_ij = v_k  when  theta_{k-1} < z_ij <= theta_k,   z_ij ~ N(eta_ij, sigma^2)
    P(r_ij = v_k) = Phi((theta_k - eta_ij)/sigma) - Phi((theta_{k-1} - eta_ij)/sigma)

with theta_0 = -inf, theta_K = +inf and K - 1 cut points. The latent z lives on the
rating scale: theta_1 is fixed at the first midpoint (v_1 + v_2)/2 (it fixes the
location, mu stays free), sigma is fixed (it fixes the scale), and the free cut points
have the prior theta_k ~ N((v_k + v_{k+1})/2, ``cutpoint_sd``^2), restricted to
theta_1 < theta_2 < ... < theta_{K-1}. With every cut point at its midpoint this is the
Gaussian model's predictive mass on each grid bin; freeing them lets ratings heap on
whole stars. ``ordinal_link="logit"`` puts the logistic cdf F in the place of Phi (the
ordered logit, z_ij ~ Logistic(eta_ij, sigma), whose sd is pi/sqrt(3) sigma = 1.81 sigma:
:data:`LOGIT_SIGMA` gives it the probit's latent sd); PyMC's engines (map, nuts, advi)
fit it, the Gibbs sampler's augmentation is the probit's. (:mod:`bayes_pmf.model.params`
holds the ordinal arithmetic.)

``thresholds="user"`` gives every user u their own cut points (the Bayesian form of
Koren & Sill's OrdRec): T_u1 = theta_1 (fixed), and each gap the global one stretched,

    T_u,k+1 - T_u,k = (theta_k+1 - theta_k) exp(epsilon_uk),   epsilon_uk ~ N(0, tau^2)

with tau = ``threshold_sd`` under fixed priors; under the hierarchical families tau is
learned, 1/tau^2 ~ Gamma(``threshold_prior``), so that data whose users share one scale
shrink every user to the global cut points. Users who never give half stars get wide
whole-star intervals, users who never go below 3 a wide bottom one, and users with few
ratings stay near the global cut points. A user the model has not seen gets the global
ones.

The noise (``noise``): "fixed" (sigma as given) or "learned" (1/sigma^2 ~ Gamma(a, b),
:data:`NOISE_PRIOR`). mu has a flat prior, or N(m0, s0^2) with ``mu_prior=(m0, s0)``
(the calibration checks need a proper prior to draw mu from). ``constrained=True`` is
constrained PMF, the implicit-feedback model: U_i = Y_i + n_i^-a sum_{k in N(i)} W_k, N(i)
the n_i items user i rated in the training data, a = 1 (``implicit_norm="count"``: the
mean of W over them, Salakhutdinov & Mnih 2007) or 1/2 (``"sqrt"``: Koren's SVD++
normalisation); Y_i has the user prior, and W_k ~ N(0, sigma_w^2 I) under fixed priors,
otherwise its own precision from the family (zero-mean: ~ Wishart(I, d) for both Wishart
families, a Gamma for "spherical", d Gammas for "diagonal"). Which items a user chose to
rate says something about their taste even where the rating values do not.
``implicit_items=True`` is the same on the item side: V_j = X_j + m_j^-a sum_{i in R(j)} Z_i,
R(j) the m_j users who rated item j, X_j with the item prior and Z (users x d) with its
own prior as W's (sigma_w's scale under fixed priors). Who rated an item says much about
it when its ratings are few: on the embedded MovieLens (median 3 ratings per item) this
side carries most of the gain.

``item_features="genres"`` adds the items' side information (BPMF with side
information, Porteous, Welling & Asuncion 2010, with the link matrix as factors): the
tags of the item_info column named (``"Comedy|Drama"``; the embedded MovieLens has
``genres``) each get a factor vector Phi_g, and V_j = X_j (+ the implicit part) +
k_j^-a sum_{g in T(j)} Phi_g over the k_j tags of item j. Equivalently X_j's prior mean
is the normalised sum of its tags' factors. Phi has the prior of Z (and shares Z's
precision when both are on: the item side has one additive block, M' Z + G Phi, with
rows iid under one zero-mean prior). An item with no training ratings still has its
tags: its prediction is mu + b_i + U_i . (k^-a sum Phi_g) instead of mu + b_i.
``user_features="gender,occupation,age"`` is the same on the user side, from user_info
columns (e.g. MovieLens 100k's ``u.user``): each value of each column named is a tag
"column=value" (a numeric column's every distinct value is its own tag; group values
into a new column first for coarser tags), U_i = Y_i (+ the implicit part W) + h_i^-a
sum_{g in T(i)} Psi_g, with Psi under W's prior (one additive block M W + H Psi). A new
user with no ratings is predicted from their tags: mu + c_j + (h^-a sum Psi_g) . V_j.
``tag_biases=True`` lets the tags shift the biases too (bias regressors): c_j ~ N(g_j .
beta_item, sigma_c^2) with g_j = k_j^-a (the indicator of item j's tags), likewise b_i ~
N(h_i . beta_user, sigma_b^2) from the users' tags, and every tag's beta_g ~ N(0,
``sigma_tag_bias``^2). A cold item then gets mu + g_j . beta_item + ... : documentaries
rated above horror films before anyone rated the new one.

Fixed scales and ridge penalties are two views of one model: with fixed sigmas the
negative log-posterior is E / sigma^2 + const, with the MAP objective

    E = 1/2 sum_ij I_ij (r_ij - eta_ij)^2 + lambda_u/2 sum_i |U_i|^2 + lambda_v/2 sum_j |V_j|^2
        + lambda_user_bias/2 sum_i b_i^2 + lambda_item_bias/2 sum_j c_j^2,

    lambda_u = sigma^2 / sigma_u^2, ...   (this module is the only place it is derived).

Defaults: d = 10, biases, lambda = 15 on the factors and 5 on the biases with sigma = 0.9
(chosen on an inner validation split of the embedded MovieLens' training part), fixed
priors and noise: the one model every engine can fit. The main job's posterior model is
the same with ``prior="wishart", noise="learned"`` (:meth:`PMFSpec.hierarchical`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from ..errors import ConfigError

Link = Literal["identity", "logistic"]
Thresholds = Literal["global", "user"]
OrdinalLink = Literal["probit", "logit"]
Likelihood = Literal["gaussian", "ordinal"]
ImplicitNorm = Literal["count", "sqrt"]
Prior = Literal["fixed", "spherical", "diagonal", "wishart", "normal-wishart"]
Noise = Literal["fixed", "learned"]
PRIORS: tuple[str, ...] = ("fixed", "spherical", "diagonal", "wishart", "normal-wishart")
NOISES: tuple[str, ...] = ("fixed", "learned")
LINKS: tuple[str, ...] = ("identity", "logistic")
LIKELIHOODS: tuple[str, ...] = ("gaussian", "ordinal")
IMPLICIT_NORMS: tuple[str, ...] = ("count", "sqrt")
THRESHOLDS: tuple[str, ...] = ("global", "user")
ORDINAL_LINKS: tuple[str, ...] = ("probit", "logit")

# Defaults, set once (everything else reads them from here).
DEFAULT_FACTORS = 10
DEFAULT_SIGMA = 0.9
DEFAULT_LAMBDA = 15.0          # factors, in the model with biases
DEFAULT_LAMBDA_NO_BIAS = 10.0  # factors, in the model without biases
DEFAULT_LAMBDA_BIAS = 5.0      # user and item biases
DEFAULT_SIGMA_W = 1.0          # constrained PMF's W: 1.0 beat 0.3 and 3.0 on MovieLens
DEFAULT_SIGMA_TAG_BIAS = 0.5   # tag_biases: prior sd of a tag's bias regressor (stars)
DEFAULT_PRIOR: Prior = "fixed"
DEFAULT_POSTERIOR_PRIOR: Prior = "wishart"  # the main job's posterior model
# Hyperpriors of the hierarchical families.
NOISE_PRIOR = (1.0, 1.0)       # Gamma(shape, rate) on 1/sigma^2
GAMMA_PRIOR = (1.0, 1.0)       # Gamma(a0, b0) on the spherical/diagonal/bias precisions
NW_BETA0 = 2.0                 # Normal-Wishart: prior precision multiplier of mu_U
CUTPOINT_SD = 0.5              # ordinal: prior sd of a free cut point around its midpoint
THRESHOLD_SD = 0.3             # ordinal, per-user thresholds: sd of a user's log gap offset
# ... learned under hierarchical priors: Gamma(shape, rate) on 1/tau^2 (prior mean tau 0.3,
# P(tau > 1) 1.4 %: a user's gaps mostly within a factor 2 of the global ones)
THRESHOLD_PRIOR = (2.0, 0.18)
# ordinal_link="logit": the logistic scale whose sd is the default probit's,
# DEFAULT_SIGMA sqrt(3)/pi (the main job's ordered logit uses it)
LOGIT_SIGMA = DEFAULT_SIGMA * math.sqrt(3.0) / math.pi


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float))
                                       and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}",
                          setting=name)


def _default_scale(lam: float) -> float:
    return DEFAULT_SIGMA / math.sqrt(lam)


@dataclass(frozen=True)
class PMFSpec:
    """The model (see the module docstring); frozen, so a result records what was fitted.

    Parameters
    ----------
    n_factors : latent dimension d (0: the bias-only baseline model).
    sigma : observation noise sd in rating units (the fixed value, or where a learned
        noise starts).
    sigma_u, sigma_v : prior sd of a factor entry under fixed priors (and the ridge
        penalties of the ALS start of a hierarchical model).
    global_mean : include mu.
    mu_prior : None (flat prior on mu, the default) or (m0, s0): mu ~ N(m0, s0^2).
    biases : include user and item offsets b_i, c_j.
    sigma_user_bias, sigma_item_bias : their prior sd under fixed priors.
    link : "identity" or "logistic" (the PMF paper's sigmoid on ratings mapped to [0, 1]).
    prior : "fixed", "spherical", "diagonal", "wishart" or "normal-wishart".
    noise : "fixed" or "learned" (Gamma(``noise_prior``) prior on 1/sigma^2).
    noise_prior : (shape, rate) of that Gamma prior (default :data:`NOISE_PRIOR`).
    gamma_prior : (shape, rate) of the Gamma hyperprior on the precisions of the
        "spherical" and "diagonal" families and on the bias precisions of every
        hierarchical family (default :data:`GAMMA_PRIOR`).
    nw_beta0 : the Normal-Wishart's prior precision multiplier of mu_U (default
        :data:`NW_BETA0`).
    constrained : constrained PMF, the implicit-feedback model (U = Y + the normalised sum
        of W over the items the user rated).
    sigma_w : prior sd of an entry of W under fixed priors (constrained PMF only).
    implicit_items : implicit feedback on the item side (V = X + the normalised sum of Z
        over the users who rated the item).
    implicit_norm : "count" (divide W's sum by n_i: constrained PMF as published) or
        "sqrt" (by sqrt(n_i), as SVD++); the same for Z's and the tags' Phi.
    item_features : None, or the item_info column whose "|"-separated tags enter the
        item factors (V = X + ... + the normalised sum of the tags' factors Phi).
    likelihood : "gaussian" or "ordinal" (ordered probit on the rating grid; needs the
        identity link and a fixed noise, which sets the latent scale).
    cutpoint_sd : the ordinal model's prior sd of a free cut point around its midpoint
        (default :data:`CUTPOINT_SD`).
    thresholds : "global" (one set of cut points) or "user" (each user's own cut points,
        shrunk towards the global ones; ordinal only).
    threshold_sd : with per-user thresholds and fixed priors, the prior sd tau of a
        user's log gap offset (default :data:`THRESHOLD_SD`; where a learned tau starts).
    threshold_prior : (shape, rate) of the Gamma prior on 1/tau^2 under the hierarchical
        families (default :data:`THRESHOLD_PRIOR`).
    ordinal_link : "probit" (the ordered probit, default) or "logit" (the ordered logit:
        the logistic cdf, scale sigma; fitted by map, nuts and advi).
    user_features : None, or user_info column names, comma-separated ("gender,occupation"):
        each user's values (tags "column=value"; a value may hold "|"-separated tags)
        enter the user factors (U = Y + ... + the normalised sum of the tags' factors Psi).
    tag_biases : the tags of item_features / user_features also give the biases their
        prior means (c_j ~ N(g_j . beta_item, sigma_c^2), b_i ~ N(h_i . beta_user,
        sigma_b^2)); needs biases and features on at least one side.
    sigma_tag_bias : prior sd of each tag's bias regressor beta_g (default
        :data:`DEFAULT_SIGMA_TAG_BIAS`).
    """

    n_factors: int = DEFAULT_FACTORS
    sigma: float = DEFAULT_SIGMA
    sigma_u: float = _default_scale(DEFAULT_LAMBDA)
    sigma_v: float = _default_scale(DEFAULT_LAMBDA)
    global_mean: bool = True
    biases: bool = True
    sigma_user_bias: float = _default_scale(DEFAULT_LAMBDA_BIAS)
    sigma_item_bias: float = _default_scale(DEFAULT_LAMBDA_BIAS)
    link: Link = "identity"
    prior: Prior = DEFAULT_PRIOR
    noise: Noise = "fixed"
    noise_prior: tuple[float, float] = NOISE_PRIOR
    gamma_prior: tuple[float, float] = GAMMA_PRIOR
    nw_beta0: float = NW_BETA0
    mu_prior: tuple[float, float] | None = None
    constrained: bool = False
    sigma_w: float = DEFAULT_SIGMA_W
    likelihood: Likelihood = "gaussian"
    cutpoint_sd: float = CUTPOINT_SD
    implicit_norm: ImplicitNorm = "count"
    implicit_items: bool = False
    item_features: str | None = None
    thresholds: Thresholds = "global"
    threshold_sd: float = THRESHOLD_SD
    threshold_prior: tuple[float, float] = THRESHOLD_PRIOR
    ordinal_link: OrdinalLink = "probit"
    user_features: str | None = None
    tag_biases: bool = False
    sigma_tag_bias: float = DEFAULT_SIGMA_TAG_BIAS

    def __post_init__(self) -> None:
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, int) \
                or self.n_factors < 0:
            raise ConfigError(
                f"n_factors (latent dimension d) must be an integer >= 0, got {self.n_factors!r}",
                setting="n_factors")
        for name in ("sigma", "sigma_u", "sigma_v", "sigma_user_bias", "sigma_item_bias",
                     "sigma_w", "cutpoint_sd", "threshold_sd", "sigma_tag_bias"):
            _positive(name, getattr(self, name))
        for name, allowed in (("link", LINKS), ("prior", PRIORS), ("noise", NOISES),
                              ("likelihood", LIKELIHOODS),
                              ("implicit_norm", IMPLICIT_NORMS),
                              ("thresholds", THRESHOLDS),
                              ("ordinal_link", ORDINAL_LINKS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got "
                                  f"{getattr(self, name)!r}", setting=name)
        for name in ("global_mean", "biases", "constrained", "implicit_items", "tag_biases"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got "
                                  f"{getattr(self, name)!r}", setting=name)
        for name in ("noise_prior", "gamma_prior", "threshold_prior"):
            value = getattr(self, name)
            pair = tuple(value) if isinstance(value, (list, tuple)) else ()
            if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and math.isfinite(v) and v > 0 for v in pair):
                raise ConfigError(f"{name} must be (shape, rate) > 0, got {value!r}",
                                  setting=name)
            object.__setattr__(self, name, (float(pair[0]), float(pair[1])))
        _positive("nw_beta0", self.nw_beta0)
        if self.mu_prior is not None:
            value = self.mu_prior
            pair = tuple(value) if isinstance(value, (list, tuple)) else ()
            if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and math.isfinite(v) for v in pair) or not pair[1] > 0:
                raise ConfigError(f"mu_prior must be None (flat) or (mean, sd > 0), got "
                                  f"{value!r}", setting="mu_prior")
            object.__setattr__(self, "mu_prior", (float(pair[0]), float(pair[1])))
        for name in ("constrained", "implicit_items"):
            if getattr(self, name) and self.n_factors == 0:
                raise ConfigError(f"{name}=True (implicit feedback) needs latent factors "
                                  "(n_factors >= 1)", setting=name)
        if self.item_features is not None:
            if not isinstance(self.item_features, str) or not self.item_features.strip():
                raise ConfigError("item_features must be None or the name of an item_info "
                                  f"column of tags, got {self.item_features!r}",
                                  setting="item_features")
            if self.n_factors == 0:
                raise ConfigError("item_features needs latent factors (n_factors >= 1): "
                                  "the tags enter through their factors",
                                  setting="item_features")
        if self.user_features is not None:
            columns = (self.user_features.split(",") if isinstance(self.user_features, str)
                       else [])
            if not columns or not all(c.strip() for c in columns) \
                    or len({c.strip() for c in columns}) != len(columns):
                raise ConfigError("user_features must be None or user_info column names, "
                                  "comma-separated and each named once (e.g. "
                                  f"'gender,occupation'), got {self.user_features!r}",
                                  setting="user_features")
            object.__setattr__(self, "user_features", ",".join(c.strip() for c in columns))
            if self.n_factors == 0:
                raise ConfigError("user_features needs latent factors (n_factors >= 1): "
                                  "the users' tags enter through their factors",
                                  setting="user_features")
        if self.tag_biases and not (self.biases and (self.item_features is not None
                                                     or self.user_features is not None)):
            raise ConfigError("tag_biases=True gives the biases their tags' prior means: it "
                              "needs biases=True and item_features or user_features",
                              setting="tag_biases")
        if self.thresholds == "user" and not self.ordinal:
            raise ConfigError("thresholds='user' (each user's own cut points) belongs to "
                              "the ordinal likelihood: choose likelihood='ordinal'",
                              setting="thresholds")
        if self.ordinal_link != "probit" and not self.ordinal:
            raise ConfigError(f"ordinal_link={self.ordinal_link!r} is the ordinal "
                              "likelihood's link to the rating grid: choose "
                              "likelihood='ordinal'", setting="ordinal_link")
        if self.ordinal:
            for name, wanted, why in (
                    ("link", "identity", "the ordinal model has its own link to the grid"),
                    ("noise", "fixed", "its sigma sets the latent scale, which the cut "
                                       "points cannot tell from a learned one"),
                    ("global_mean", True, "mu carries the location above the first, "
                                          "fixed cut point")):
                if getattr(self, name) != wanted:
                    raise ConfigError(f"likelihood='ordinal' needs {name}={wanted!r} ({why}), "
                                      f"got {getattr(self, name)!r}", setting=name)

    @classmethod
    def from_lambdas(
        cls,
        n_factors: int = DEFAULT_FACTORS,
        lambda_u: float = DEFAULT_LAMBDA,
        lambda_v: float | None = None,
        *,
        sigma: float = DEFAULT_SIGMA,
        lambda_user_bias: float | None = None,
        lambda_item_bias: float | None = None,
        **kwargs,
    ) -> "PMFSpec":
        """Build from ridge penalties, the ALS way of speaking (lambda = sigma^2/sigma_prior^2);
        the bias penalties default to ``DEFAULT_LAMBDA_BIAS``."""
        lambda_v = lambda_u if lambda_v is None else lambda_v
        lambda_user_bias = DEFAULT_LAMBDA_BIAS if lambda_user_bias is None else lambda_user_bias
        lambda_item_bias = DEFAULT_LAMBDA_BIAS if lambda_item_bias is None else lambda_item_bias
        for name, value in (("lambda_u", lambda_u), ("lambda_v", lambda_v),
                            ("lambda_user_bias", lambda_user_bias),
                            ("lambda_item_bias", lambda_item_bias), ("sigma", sigma)):
            _positive(name, value)
        return cls(
            n_factors=n_factors,
            sigma=sigma,
            sigma_u=sigma / math.sqrt(lambda_u),
            sigma_v=sigma / math.sqrt(lambda_v),
            sigma_user_bias=sigma / math.sqrt(lambda_user_bias),
            sigma_item_bias=sigma / math.sqrt(lambda_item_bias),
            **kwargs,
        )

    @classmethod
    def hierarchical(cls, prior: Prior = DEFAULT_POSTERIOR_PRIOR, **kwargs) -> "PMFSpec":
        """The default model with a hyperprior on the factor precisions and a learned noise
        (a fixed one for the ordinal likelihood, whose sigma sets the latent scale): the
        main job's posterior model (``prior="wishart"``)."""
        noise = "fixed" if kwargs.get("likelihood") == "ordinal" else "learned"
        return cls(prior=prior, noise=kwargs.pop("noise", noise), **kwargs)

    @property
    def ordinal(self) -> bool:
        """The ordinal likelihood on the rating grid (ordered probit or logit)."""
        return self.likelihood == "ordinal"

    @property
    def user_thresholds(self) -> bool:
        """Each user has their own cut points (ordinal, ``thresholds="user"``)."""
        return self.thresholds == "user"

    @property
    def learned_thresholds(self) -> bool:
        """Per-user thresholds whose spread tau is learned (the hierarchical families)."""
        return self.user_thresholds and self.prior != "fixed"

    @property
    def item_additive(self) -> bool:
        """The item factors have an additive part: V = X + M' Z (implicit feedback) and/or
        + G Phi (the items' tags)."""
        return self.implicit_items or self.item_features is not None

    @property
    def user_additive(self) -> bool:
        """The user factors have an additive part: U = Y + M W (constrained PMF, implicit
        feedback) and/or + H Psi (the users' tags)."""
        return self.constrained or self.user_features is not None

    @property
    def item_tag_biases(self) -> bool:
        """The items' tags give the item biases their prior means (``tag_biases``)."""
        return self.tag_biases and self.item_features is not None

    @property
    def user_tag_biases(self) -> bool:
        """The users' tags give the user biases their prior means (``tag_biases``)."""
        return self.tag_biases and self.user_features is not None

    @property
    def user_feature_columns(self) -> tuple[str, ...]:
        """The user_info columns of :attr:`user_features`, in order (() without)."""
        return tuple(self.user_features.split(",")) if self.user_features else ()

    @property
    def lambda_u(self) -> float:
        return self.sigma**2 / self.sigma_u**2

    @property
    def lambda_v(self) -> float:
        return self.sigma**2 / self.sigma_v**2

    @property
    def lambda_user_bias(self) -> float:
        return self.sigma**2 / self.sigma_user_bias**2

    @property
    def lambda_item_bias(self) -> float:
        return self.sigma**2 / self.sigma_item_bias**2

    @property
    def lambda_w(self) -> float:
        return self.sigma**2 / self.sigma_w**2

    @property
    def is_fixed(self) -> bool:
        """Fixed priors and fixed noise: a model whose MAP is the ridge problem E."""
        return self.prior == "fixed" and self.noise == "fixed"

    def map_model(self) -> "PMFSpec":
        """The same model with every scale held at its fixed value: the model whose MAP
        ALS computes (hierarchical priors have no useful joint mode: the factor scales
        collapse to zero)."""
        return replace(self, prior="fixed", noise="fixed")

    def require_fixed(self, engine: str) -> None:
        """Refuse a spec an engine cannot fit, naming the spec that it can."""
        if self.ordinal:
            raise ConfigError(
                f"{engine} computes the MAP of the Gaussian model; this spec has "
                "likelihood='ordinal'. Fit it with fit_map or sample_gibbs, or fit "
                "spec.with_(likelihood='gaussian') here", setting="likelihood")
        if not self.is_fixed:
            raise ConfigError(
                f"{engine} computes the MAP of a model with fixed priors and noise; this "
                f"spec has prior={self.prior!r}, noise={self.noise!r}. Fit spec.map_model() "
                "(the same scales held fixed), or sample this model with sample_gibbs",
                setting="prior")

    def with_(self, **changes) -> "PMFSpec":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings.update(
            lambda_u=self.lambda_u,
            lambda_v=self.lambda_v,
            lambda_user_bias=self.lambda_user_bias,
            lambda_item_bias=self.lambda_item_bias,
        )
        return settings

    @classmethod
    def from_dict(cls, settings: dict) -> "PMFSpec":
        """Inverse of :meth:`as_dict` (derived lambdas ignored). Settings written before
        ``prior``/``noise``/``constrained`` existed read as the fixed-prior model."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: settings[k] for k in names if k in settings})
