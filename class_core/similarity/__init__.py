"""DTW similarity between action chunks and the positive pairs CLASS trains on (docs/similarity.md)."""

from class_core.similarity.dtw import (
    band_from_aeon_window,
    dtw_distance,
    pair_distances,
    pairwise_distances,
    sakoe_chiba_mask,
)
from class_core.similarity.engine import (
    ENGINE_VERSION,
    Interrupted,
    PairConfig,
    cache_key,
    check_chunks,
    compute_pairs,
    fingerprint_chunks,
    meta_matches,
    n_positives,
)
from class_core.similarity.pairs import CSR, PairSet, batch_weights, load_pairs, pair_weights, save_pairs

__all__ = [
    "CSR",
    "ENGINE_VERSION",
    "Interrupted",
    "PairConfig",
    "PairSet",
    "band_from_aeon_window",
    "batch_weights",
    "cache_key",
    "check_chunks",
    "compute_pairs",
    "dtw_distance",
    "fingerprint_chunks",
    "load_pairs",
    "meta_matches",
    "n_positives",
    "pair_distances",
    "pair_weights",
    "pairwise_distances",
    "sakoe_chiba_mask",
    "save_pairs",
]
