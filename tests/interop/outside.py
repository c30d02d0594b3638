#!/usr/bin/python3
"""An outside system that speaks the shop's contract with nothing of ours but
the .proto files: Debian's python3-zmq and python3-protobuf, and classes that
protoc generates here and now.

It imports one order by calling ImportOrder (a DEALER speaking the Request /
Reply envelope), publishes a second one as a marketplace would (a PUB socket
the orders service subscribes to), and subscribes to the orders service's
events, checking that both orders arrive as OrderPlaced (the paid one also as
OrderPaid), each exactly once, with gap-free sequence numbers; then it reads
the same events again through Replay.

usage: outside.py PROTO_DIR ORDERS_RPC ORDERS_PUB IMPORT_BIND
Exit status 0 when every check passed."""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import zmq

failures = 0


def check(what, ok):
    global failures
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures += 1


def generate(proto_dir):
    out = tempfile.mkdtemp(prefix="shop-interop-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    files = ["shop/common/v1/common.proto", "shop/catalog/v1/catalog.proto",
             "shop/orders/v1/orders.proto"]
    subprocess.run(["protoc", "-I", proto_dir, "--python_out=" + out] + files, check=True)
    sys.path.insert(0, out)
    common = importlib.import_module("shop.common.v1.common_pb2")
    orders = importlib.import_module("shop.orders.v1.orders_pb2")
    return common, orders


def call(sock, common, method, request, response_type, timeout_ms=10000):
    req = common.Request(request_id=str(uuid.uuid4()), method=method,
                         deadline_ms=int(time.time() * 1000) + timeout_ms,
                         body=request.SerializeToString())
    sock.send(req.SerializeToString())
    if not sock.poll(timeout_ms):
        raise RuntimeError(method + ": no reply")
    reply = common.Reply.FromString(sock.recv())
    if reply.request_id != req.request_id:
        raise RuntimeError(method + ": a reply to another request")
    body = response_type.FromString(reply.body) if reply.body else response_type()
    return reply.status.code, reply.status.message, body


def import_request(orders, external_id, paid):
    r = orders.ImportOrderRequest(channel="pymarket", external_id=external_id,
                                  customer_id="py-buyer", paid=paid,
                                  payment_reference="py-pay-" + external_id if paid else "")
    line = r.lines.add(sku="PY-CUP", quantity=2)
    line.unit_price.minor_units = 2500
    line.unit_price.currency = "CNY"
    a = r.shipping_address
    a.name, a.line1, a.city, a.country = "Zhang San", "9 Harbour Road", "Ningbo", "CN"
    return r


def main():
    proto_dir, rpc, pub, import_bind = sys.argv[1:5]
    common, orders = generate(proto_dir)
    ctx = zmq.Context()
    run = uuid.uuid4().hex[:8]
    called_id, published_id = "CALL-" + run, "PUB-" + run

    events = ctx.socket(zmq.SUB)
    events.setsockopt(zmq.SUBSCRIBE, b"shop.orders.v1.")
    events.connect(pub)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(rpc)
    market = ctx.socket(zmq.PUB)
    market.setsockopt(zmq.LINGER, 0)
    market.bind(import_bind)
    time.sleep(0.3)  # let the subscriptions reach their publishers

    # 1. ImportOrder as a call; a repeat is a duplicate of the same order.
    svc = "shop.orders.v1.OrdersService/"
    code, msg, resp = call(dealer, common, svc + "ImportOrder",
                           import_request(orders, called_id, paid=False),
                           orders.ImportOrderResponse)
    check("ImportOrder answers OK (%s)" % msg, code == common.CODE_OK)
    check("the imported order is placed", resp.order.state == orders.ORDER_STATE_PLACED)
    check("priced as the channel sent it: 2 x 25.00 = 50.00 CNY",
          resp.order.total.minor_units == 5000 and resp.order.total.currency == "CNY")
    first_id = resp.order.id
    code, msg, resp = call(dealer, common, svc + "ImportOrder",
                           import_request(orders, called_id, paid=False),
                           orders.ImportOrderResponse)
    check("the same external order again is a duplicate of " + first_id,
          code == common.CODE_OK and resp.duplicate and resp.order.id == first_id)
    code, msg, _ = call(dealer, common, svc + "ImportOrder",
                        orders.ImportOrderRequest(channel="pymarket"), orders.ImportOrderResponse)
    check("a bad order gets INVALID_ARGUMENT with a reason (%s)" % msg,
          code == common.CODE_INVALID_ARGUMENT and msg)

    # 2. An order published, paid, as a marketplace would: repeated until it
    # shows up (PUB/SUB keeps nothing for a subscriber not yet connected;
    # the service deduplicates the repeats).
    seen = {}      # (type, external id) -> count
    sequences = []
    published = import_request(orders, published_id, paid=True).SerializeToString()
    deadline = time.time() + 20
    next_publish = 0.0
    while time.time() < deadline:
        if time.time() >= next_publish and ("shop.orders.v1.OrderPaid", published_id) not in seen:
            market.send_multipart([b"shop.orders.v1.ImportOrderRequest", published])
            next_publish = time.time() + 0.5
        if events.poll(100):
            topic, payload = events.recv_multipart()
            env = common.Envelope.FromString(payload)
            check_type = env.type == topic.decode()
            if not check_type:
                check("the topic frame is the event type", False)
            sequences.append(env.sequence)
            if env.type in ("shop.orders.v1.OrderPlaced", "shop.orders.v1.OrderPaid"):
                ev = getattr(orders, env.type.rsplit(".", 1)[1]).FromString(env.payload)
                key = (env.type, ev.order.external_id)
                seen[key] = seen.get(key, 0) + 1
        if (seen.get(("shop.orders.v1.OrderPaid", published_id)) and
                seen.get(("shop.orders.v1.OrderPlaced", called_id))):
            time.sleep(1.0)  # let any duplicate show itself
            while events.poll(100):
                topic, payload = events.recv_multipart()
                env = common.Envelope.FromString(payload)
                sequences.append(env.sequence)
                if env.type in ("shop.orders.v1.OrderPlaced", "shop.orders.v1.OrderPaid"):
                    ev = getattr(orders, env.type.rsplit(".", 1)[1]).FromString(env.payload)
                    key = (env.type, ev.order.external_id)
                    seen[key] = seen.get(key, 0) + 1
            break

    check("the called order's OrderPlaced arrived once",
          seen.get(("shop.orders.v1.OrderPlaced", called_id)) == 1)
    check("the published order was imported: OrderPlaced once",
          seen.get(("shop.orders.v1.OrderPlaced", published_id)) == 1)
    check("and OrderPaid once", seen.get(("shop.orders.v1.OrderPaid", published_id)) == 1)
    check("event sequences are gap-free and increasing",
          len(sequences) > 0 and sequences == list(range(sequences[0], sequences[0] + len(sequences))))

    # 3. The same stream read again through Replay.
    code, msg, rep = call(dealer, common, "shop.common.v1.EventService/Replay",
                          common.ReplayRequest(after_sequence=0, limit=1000), common.ReplayResponse)
    types = [e.type for e in rep.events]
    check("Replay answers OK", code == common.CODE_OK)
    check("Replay holds both OrderPlaced and the OrderPaid",
          types.count("shop.orders.v1.OrderPlaced") == 2 and types.count("shop.orders.v1.OrderPaid") == 1)
    check("Replay's sequences start at 1 without gaps",
          [e.sequence for e in rep.events] == list(range(1, len(rep.events) + 1)))

    # 4. GetOrder by the channel's id.
    code, msg, got = call(dealer, common, svc + "GetOrder",
                          orders.GetOrderRequest(channel="pymarket", external_id=published_id),
                          orders.GetOrderResponse)
    check("GetOrder by channel and external id finds the paid order",
          code == common.CODE_OK and got.order.state == orders.ORDER_STATE_PAID and
          got.order.payment_reference == "py-pay-" + published_id)

    for s in (events, dealer, market):
        s.close(0)
    ctx.term()
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
