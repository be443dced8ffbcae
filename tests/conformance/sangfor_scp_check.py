"""Drives `vmauto sim` with the public `sangfor-scp` client, unchanged.

Usage: sangfor_scp_check.py BASE_URL ACCESS_KEY SECRET_KEY USERNAME PASSWORD

Logs in both ways (token and EC2), reads the catalogue, then creates a server, waits for its
task and its IP, powers it off and on, resizes it and deletes it. Prints "CONFORMANCE OK"
at the end; any failure raises (non-zero exit).
"""
import sys
import time

from sangfor_scp import SCPClient
from sangfor_scp.exceptions import SCPAuthError, SCPNotFoundError

POLL = 0.1


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def wait(client, task_id, what):
    task = client.tasks.wait(task_id, timeout=60, poll_interval=POLL)
    check(task.get("status") == "finish", f"{what} task finished")
    return task


def server_until(client, server_id, what, pred, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm = client.servers.get(server_id)
        if pred(vm):
            check(True, what)
            return vm
        time.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}: {vm}")


def main():
    base, ak, sk, user, password = sys.argv[1:6]

    # Both authentications, and wrong credentials refused.
    token_client = SCPClient(host=base, username=user, password=password)
    ec2_client = SCPClient(host=base, access_key=ak, secret_key=sk)
    try:
        SCPClient(host=base, username=user, password=password + "x")
        raise AssertionError("wrong password accepted")
    except SCPAuthError:
        check(True, "wrong password refused")
    bad = SCPClient(host=base, access_key=ak, secret_key=sk + "x")
    try:
        bad.resource_pools.list()
        raise AssertionError("wrong secret key accepted")
    except SCPAuthError:
        check(True, "wrong secret key refused")

    for name, client in (("token", token_client), ("ec2", ec2_client)):
        pools = client.resource_pools.list()
        check(len(pools) >= 1, f"{name}: resource pools listed ({len(pools)})")

    c = ec2_client
    pool = c.resource_pools.list()[0]
    az_id = pool["id"]
    detail = c.resource_pools.get(az_id)
    check("physical_resources" in detail, "pool detail has capacity")
    overview = c.resource_pools.overview()
    names = {r["name"] for r in overview["virtual_resources"]}
    check({"CPU", "Memory"} <= names, "overview has CPU and Memory")
    images = c.images.list()
    image = next(i for i in images if i["status"] == "active" and i["disk_format"] == "aCloud")
    check(bool(image["id"]), f"image chosen: {image['name']}")
    tags = c.resource_pools.storage_tags(az_id)
    check(len(tags) >= 1, "storage tags listed")
    vpc = next(c.networks.list_vpcs(az_id=az_id))
    subnet = next(c.networks.list_subnets(vpc_id=vpc["id"]))
    check(bool(subnet["id"]), "vpc and subnet found")
    check(c.system.version()["build_version"].startswith("SCP"), "system version")

    result = c.servers.create(
        az_id=az_id,
        image_id=image["id"],
        storage_tag_id=tags[0]["id"],
        cores=2,
        memory_mb=2048,
        name="conformance-vm",
        description="vmauto-conformance",
        networks=[{"vif_id": "net0", "vpc_id": vpc["id"], "subnet_id": subnet["id"], "connect": 1, "model": "virtio"}],
    )
    server_id = result["uuids"][0]
    wait(c, result["task_id"], "create")
    found = c.servers.find_by_name("conformance-vm", az_id=az_id)
    check(found is not None and found["id"] == server_id, "find_by_name sees the new server")
    vm = server_until(c, server_id, "IP reported", lambda v: any(n.get("ip_address") for n in v["networks"]))
    ip = next(n["ip_address"] for n in vm["networks"] if n.get("ip_address"))
    check(vm["status"] == "running", f"running with IP {ip}")

    # Token client sees the same server (both auth modes talk to one cloud).
    check(token_client.servers.get(server_id)["name"] == "conformance-vm", "token client reads it")

    wait(c, c.servers.power_off(server_id, force=True), "power off")
    server_until(c, server_id, "stopped without IP", lambda v: v["status"] == "stopped" and not v["ips"])
    wait(c, c.servers.power_on(server_id), "power on")
    server_until(c, server_id, "running again", lambda v: v["status"] == "running")

    wait(c, c.servers.update(server_id, cores=4, memory_mb=4096), "resize")
    vm = c.servers.get(server_id)
    check(vm["cores"] == 4 and vm["memory_mb"] == 4096, "resized to 4 cores / 4096 MB")

    wait(c, c.servers.set_password(server_id, "N3w-Passw0rd!"), "set password")

    wait(token_client, token_client.servers.stop(server_id), "stop via token client")
    wait(c, c.servers.delete(server_id), "delete to recycle bin")
    try:
        c.servers.get(server_id)
        raise AssertionError("recycled server still visible")
    except SCPNotFoundError:
        check(True, "recycled server is 404")
    wait(c, c.servers.restore(server_id), "restore")
    wait(c, c.servers.delete(server_id, permanent=True), "permanent delete")
    check(c.servers.count(name="conformance-vm") == 0, "server gone")
    print("CONFORMANCE OK", flush=True)


if __name__ == "__main__":
    main()
