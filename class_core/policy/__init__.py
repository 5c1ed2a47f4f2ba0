"""Policies with one inference API: ``reset()``, ``predict_action_chunk(obs) -> (T_p, D)``,
``select_action(obs) -> (D,)``. ``load(path)`` opens an exported artifact under ``models/``."""

from class_core.policy.artifact import (
    ArtifactError,
    export_parametric_policy,
    export_retrieval_policy,
    load,
    read_manifest,
    save_policy,
)
from class_core.policy.base import MinMax, ObservationEncoder, Policy, PolicySpec
from class_core.policy.knn import RetrievalPolicy, build_bank
from class_core.policy.parametric import HeadPolicy, PolicyModel, build_policy_model
from class_core.policy.retrieval import IndexConfig, KNNIndex, RetrievalConfig

__all__ = [
    "ArtifactError",
    "HeadPolicy",
    "IndexConfig",
    "KNNIndex",
    "MinMax",
    "ObservationEncoder",
    "Policy",
    "PolicyModel",
    "PolicySpec",
    "RetrievalConfig",
    "RetrievalPolicy",
    "build_bank",
    "build_policy_model",
    "export_parametric_policy",
    "export_retrieval_policy",
    "load",
    "read_manifest",
    "save_policy",
]
