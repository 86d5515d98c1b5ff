"""Engine stand-ins: ixhpc's simulated engine started by the engines' own command lines.

No GPU engine runs on the project's machines; on the ``local`` cluster profile (and only
there: ``ClusterProfile.engine_standins``) a job puts these stand-ins first on ``PATH`` and
``PYTHONPATH``, so the very argv ixhpc builds for a real engine
(``python3 -m sglang.launch_server ...``, ``vllm serve ...``, ``trtllm-serve serve|disaggregated``,
``trtllm-llmapi-launch``, ``python3 -m dynamo.frontend|sglang|vllm|trtllm``,
``python3 -m atom.entrypoints.openai_server``, ``etcd``, ``nats-server``) runs here.

Each stand-in:

* records the argv and environment it was started with (secret-looking values masked, by
  ``ixhpc.recipe.SECRET_NAME``'s rule) as ``Layout.STANDIN_RECORD`` in the job's log directory;
* parses the argument list against the flag list of the engine release the job's image implies
  (``ixhpc.engine_flags``, resolved when the job is rendered and written to the job's stand-in
  config), rejecting what the release rejects with that engine's kind of message and exit
  status 2 (argparse's ``error: unrecognized arguments`` for sglang/vLLM/Dynamo/ATOM, click's
  ``Error: No such option`` for ``trtllm-serve``);
* maps ports, host, TP/EP/DP, disaggregation mode and bootstrap port, served model name, max
  model length, speculative decoding and stream interval onto ``ixhpc.sim``'s engine, and serves
  that engine's HTTP surface (``/health``, ``/v1/models``, completions, ``/metrics`` under the
  engine's metric names; sglang router ``/workers``; Dynamo's frontend routes to the workers
  registered in the ``etcd`` stand-in, a small subset of etcd's v3 JSON API).

Layout of the files render writes (``ixhpc.standins.files``): ``RUN/standins/bin`` (executables),
``RUN/standins/lib`` (packages named like the engines' modules), ``RUN/standins/jobs/<job>.json``
(per job: the flag tables and the simulated engine's settings). The code itself runs from the
run's bundle (``ixhpc.bundle``), like every other ixhpc program in a job.
"""
