"""Small recipe texts several test modules start from."""

GOOD = """\
sim-single:
  image: none
  model: sim/m
  model-prefix: sim
  precision: fp8
  framework: sim
  runner: mi355x
  seq-len-configs:
  - isl: 128
    osl: 64
    search-space:
    - tp: 8
      conc-start: 2
      conc-end: 8
"""

MULTI = """\
mn:
  image: img
  model: m
  model-prefix: p
  precision: fp4
  framework: sim
  runner: gb200
  multinode: true
  disagg: true
  seq-len-configs:
  - isl: 1024
    osl: 1024
    search-space:
    - conc-list: [4, 8]
      prefill: {num-worker: 1, tp: 4, ep: 4, dp-attn: true}
      decode: {num-worker: 2, tp: 8, ep: 8, dp-attn: false}
"""
