"""Grouping unlabelled images: descriptors, clustering algorithms, reports."""

from imagelearn.cluster.algorithms import METHODS, ImageClusterer
from imagelearn.cluster.descriptors import DESCRIPTORS, describe_images
from imagelearn.cluster.duplicates import near_duplicate_groups
from imagelearn.cluster.metrics import clustering_agreement, purity
from imagelearn.cluster.workflow import cluster_collection

__all__ = [
    "DESCRIPTORS",
    "METHODS",
    "ImageClusterer",
    "cluster_collection",
    "clustering_agreement",
    "describe_images",
    "near_duplicate_groups",
    "purity",
]
