"""Li et al. (TVCG 2023): head importance by pruning, attention strength over k-hop neighbours, attention
patterns. Its modules land here with the head-analysis stage."""
