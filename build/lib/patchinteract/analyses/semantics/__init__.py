"""Wu et al.: which attention goes to SIFT keypoint patches, and the weighted interrelation between them.
Its modules land here with the semantics stage."""
