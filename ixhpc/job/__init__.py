"""Code that runs on compute nodes: the job wrapper, the node steps, the merge job."""
