"""`make soak`: a reliability run of the connector against its own local stack.

Modules, one job each:
  config          rates, sizes, time limits and the connector settings of the run
  jsontext        JSON text with verbatim pieces (numbers DynamoDB cannot store, deep nesting)
  values          hostile JSON values (lone surrogates, huge numbers, deep nesting, odd unicode, times)
  spec            valid Segment Spec messages
  mutations       hostile values put into random fields of valid messages; batches mixing both
  hostile         the hostile-input generator: deterministic (method, target, headers, body) cases
  wire            HTTP on raw sockets (non-latin-1 header bytes, odd paths) and a keep-alive JSON client
  flaky_sink      a Segment sink that refuses a share of requests with 500 or 429
  stack           `python -m local_stack` as a subprocess (own port, keys, state file; output kept and scanned)
  session         what the phases share: stack, sink, clients, parallel senders, the deadline
  load            the load phase's users and message bodies
  deliveries      what reached the sink, traced back to the messages sent
  phase_load      (a) load and read back, (b) redelivery
  phase_identity  (c) out-of-order identifies, (d) parallel identifies of one user
  phase_hostile   (f) hostile inputs
  phase_delivery  waiting for the outbound side, (a)'s delivery checks, (e) the failing sink
  report          named checks, figures, phase times and the closing `N passed, N failed` line
  __main__        the run
"""
