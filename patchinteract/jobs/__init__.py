"""The jobs that run on several ranks (torch.distributed), one function per rule's script. A script hands
its job over as plain data (:func:`patchinteract.runtime.job_of`) and launches the function on the job's
ranks (:func:`patchinteract.ranks.launch`); every rank runs it, rank 0 writes the outputs."""
