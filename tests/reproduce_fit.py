"""Fit one method on small synthetic data with a seed and print a hash of every number
in the result (posterior and attrs' settings); run in a subprocess by test_determinism."""

import hashlib
import sys

import numpy as np

import bayes_pmf as bp


def fingerprint(result: bp.PMFResult) -> str:
    digest = hashlib.sha256()
    for name in sorted(result.idata.posterior.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(result.idata.posterior[name].to_numpy()).tobytes())
    return digest.hexdigest()


def fit(method: str, seed: int) -> bp.PMFResult:
    spec = bp.PMFSpec(n_factors=2, sigma=0.5, biases=True)
    data = bp.make_synthetic(40, 30, 400, spec, rng=7).data
    if method == "als":
        return bp.als_result(bp.fit_als(data, spec, rng=seed, progress=False), data)
    if method == "map":
        from bayes_pmf.engines.pymc_fit import fit_map

        return fit_map(data, spec, start="jitter", rng=seed, progress=False)
    if method == "gibbs":
        from bayes_pmf.engines.gibbs import sample_gibbs

        return sample_gibbs(data, spec.with_(prior="normal-wishart", noise="learned"), draws=20,
                            tune=10, chains=2, rng=seed, progress=False)
    if method == "nuts":
        from bayes_pmf.engines.pymc_fit import sample_nuts

        return sample_nuts(data, spec, draws=20, tune=20, chains=2, sampler="pymc",
                           start="jitter", rng=seed, progress=False)
    if method == "advi":
        from bayes_pmf.engines.pymc_fit import fit_advi

        return fit_advi(data, spec, iterations=300, draws=20, start="jitter", rng=seed,
                        progress=False)
    raise SystemExit(f"unknown method {method}")


if __name__ == "__main__":
    print(fingerprint(fit(sys.argv[1], int(sys.argv[2]))))
