"""Dataset readers (LaPa, CelebAMask-HQ, plain folders), image IO, transforms and masking."""
