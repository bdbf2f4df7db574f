"""Cohorts: segment thousands of scans in one resumable run, on this machine's cores or a Ray cluster.

`inputs` turns the command line's INPUTS (files, folders, globs, CSV manifests) into jobs with unique,
deterministic output names; `records` keeps one status file per scan (what resuming after a crash
trusts) and rebuilds the volume report from them; `worker` segments one scan and writes its label map
and status; `engines` runs the jobs on a local process pool or on Ray Data actors; `run` ties it
together (skip what is done, progress, workspace registration in the parent process).

May import: `segloop.io`, `segloop.data`, `segloop.model`, `segloop.store`, `segloop.wholehead`,
`segloop.config`, `segloop.errors`. Ray is optional and imported only inside the Ray engine.
"""
