"""proto/PROTOCOL.md's message table against the code it describes.

The schema (proto/mesh_msg.def) and the services' conversation tables (the
mesh_route_t arrays mesh_dispatch reads) are what the mesh does; the
Markdown table is what people read.  This test fails when they part: a
message's code, name or fields, whether its header carries a request id,
and which services receive it."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingress", "router", "connector", "audit", "cache")


def schema():
    text = (REPO / "proto/mesh_msg.def").read_text()
    members = dict(re.findall(r"F \((\w+),\s*\w+,\s*(\w+),", text))
    usage = re.search(r"#define MESH_USAGE_FIELDS\s*\\\n(.*?)\n\n", text, re.S).group(1)
    usage = re.findall(r"F \((\w+)\)", usage)
    messages = {}
    block = text[text.index("#define MESH_MESSAGES"):]
    for m in re.finditer(r"M \((\w+),\s*(\d+),\s*(REQ|NONE),(.*?)\)\s*\\?\s*\n\s*(?=/\*|M \(|$)", block, re.S):
        name, code, has_id, body = m.groups()
        fields = []
        for token in re.findall(r"F \((\w+)\)|(MESH_USAGE_FIELDS)", body):
            fields.extend(usage if token[1] else [token[0]])
        messages[name] = {"code": int(code), "id": has_id == "REQ",
                          "fields": [members[f] for f in fields]}
    return messages


def documented():
    text = (REPO / "proto/PROTOCOL.md").read_text()
    table = text[text.index("## Messages"):]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].isdigit():
            continue
        code, name, route, fields = int(cells[0]), cells[1], cells[2], cells[3]
        parts = [p.strip() for p in re.split(r"→|⇄", route)]
        receivers = set()
        for i, part in enumerate(parts):
            if i > 0 or "⇄" in route:
                receivers |= {s.strip() for s in part.split(",")}
        rows[name] = {"code": code, "fields": [f.strip() for f in fields.split(",") if f.strip()],
                      "receivers": receivers & set(SERVICES)}
    no_id = re.search(r"empty for (.*?)\.", text).group(1)
    return rows, set(re.findall(r"`(\w+)`", no_id))


def received():
    """For each service, the message types its conversation tables route."""
    out = {}
    for service in SERVICES:
        types = set()
        for source in (REPO / "services" / service).glob("*.c") if (REPO / "services" / service).exists() else []:
            for table in re.findall(r"static const mesh_route_t \w+ \[\] = \{(.*?)\};", source.read_text(), re.S):
                types |= set(re.findall(r"MESH_MSG_(\w+)", table))
        out[service] = types
    return out


def test_every_message_is_documented_as_defined():
    code, doc = schema(), documented()[0]
    assert sorted(code) == sorted(doc), "messages in mesh_msg.def vs PROTOCOL.md"
    for name, message in code.items():
        assert doc[name]["code"] == message["code"], name
        assert doc[name]["fields"] == message["fields"], name


def test_request_id_header_is_documented():
    code = schema()
    assert documented()[1] == {name for name, m in code.items() if not m["id"]}


def test_receivers_are_the_services_whose_tables_route_them():
    doc = documented()[0]
    tables = received()
    for name, row in doc.items():
        routed_by = {service for service, types in tables.items() if name in types}
        assert routed_by == row["receivers"], \
            "%s: PROTOCOL.md says %s receive it, the conversation tables say %s" % (
                name, sorted(row["receivers"]), sorted(routed_by))


def test_the_test_reads_something():
    # A parser that found nothing would pass the checks above vacuously
    assert len(schema()) >= 16
    assert all(received()[s] for s in ("ingress", "router", "connector", "audit"))
