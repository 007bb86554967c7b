"""fnlab: a false-negative lab for contrastive and retrieval training.

Reference: Li et al., "Your Negative May not Be True Negative: Boosting Image-Text
Matching with False Negative Elimination", ACM MM 2023 (FNE).
"""

__version__ = "0.1.0"
