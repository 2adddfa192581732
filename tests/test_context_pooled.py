"""audit_context() through PgBouncer in transaction-pooling mode: clients that share a few
server connections never see each other's context, and none is left on a server connection.

The test starts Debian's ``pgbouncer`` on a loopback port (``DPA_PGBOUNCER_PORT``, 6439 by
default) in front of the test server, with two server connections for many clients, and
reaches it through the ``pooled`` database alias (a test mirror of ``default``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections, transaction
from library.models import Book

from django_partitioned_audit.context import audit_context
from tests.test_context import _fresh_trail, by_isbn  # noqa: F401 - an autouse fixture

POOL_SIZE = 2


def _binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if found is None:
        raise AssertionError(
            "pgbouncer is not installed: `make test` installs it (apt-get install pgbouncer)"
        )
    return found


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    server = settings.DATABASES["default"]
    port = settings.PGBOUNCER_PORT
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise AssertionError(f"port {port} is taken; set DPA_PGBOUNCER_PORT to a free one")
    folder = tempfile.mkdtemp(prefix="dpa_pgbouncer_")
    os.chmod(folder, 0o777)  # pgbouncer writes its log and pid file here as nobody
    user = server["USER"]
    with open(os.path.join(folder, "users.txt"), "w") as f:
        f.write(f'"{user}" ""\n')
    with open(os.path.join(folder, "pgbouncer.ini"), "w") as f:
        f.write(
            "[databases]\n"
            f"* = host={server['HOST'] or '127.0.0.1'} port={server['PORT'] or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {folder}/users.txt\n"
            f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 100\n"
            f"logfile = {folder}/pgbouncer.log\npidfile = {folder}/pgbouncer.pid\n"
            "ignore_startup_parameters = extra_float_digits,options\nserver_reset_query =\n"
        )
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o644)
    command = [_binary(), os.path.join(folder, "pgbouncer.ini")]
    if os.geteuid() == 0:
        # pgbouncer refuses to run as root. Behind a Unix socket (the embedded server), run
        # it as the socket directory's owner, the only user that may enter that directory.
        host = str(server["HOST"] or "")
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
        command[1:1] = ["-u", owner]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise AssertionError(f"pgbouncer exited: {process.stdout.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.05)
        else:
            raise AssertionError("pgbouncer did not start listening")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def server_pid(alias: str = "pooled") -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True, databases=["default", "pooled"])
def test_concurrent_clients_through_the_pooler_never_see_each_others_context(pgbouncer, read_model):
    errors: list[BaseException] = []
    pids: set[int] = set()
    rounds = 25

    def client(user: int) -> None:
        try:
            for i in range(rounds):
                with audit_context(user_id=user):
                    if i % 2:
                        with transaction.atomic(using="pooled"):
                            Book.objects.using("pooled").create(isbn=f"{user}-{i}", title="atomic")
                            pids.add(server_pid())
                    else:
                        Book.objects.using("pooled").create(isbn=f"{user}-{i}", title="autocommit")
                # Outside the block, on whatever server connection comes next: nothing.
                Book.objects.using("pooled").create(isbn=f"{user}-{i}-none", title="none")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections["pooled"].close()

    threads = [threading.Thread(target=client, args=(user,)) for user in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    found = by_isbn(read_model)
    assert len(found) == 6 * rounds * 2
    for isbn, ctx in found.items():
        user = int(isbn.split("-")[0])
        assert ctx == (None if isbn.endswith("-none") else {"user_id": user}), isbn
    assert len(pids) <= POOL_SIZE  # six clients really shared two server connections


@pytest.mark.django_db(transaction=True, databases=["default", "pooled"])
def test_no_server_connection_keeps_a_context_for_its_next_client(pgbouncer, read_model):
    with audit_context(user_id=1):
        Book.objects.using("pooled").create(isbn="a", title="x")
        with transaction.atomic(using="pooled"):
            Book.objects.using("pooled").create(isbn="b", title="y")
    seen: list[Any] = []
    for _ in range(2 * POOL_SIZE):  # every server connection of the pool, in turn
        with connections["pooled"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), current_setting('partitioned_audit.context', true)")
            seen.append(cursor.fetchone())
        connections["pooled"].close()
    assert {value for _, value in seen} <= {None, ""}
    assert by_isbn(read_model) == {"a": {"user_id": 1}, "b": {"user_id": 1}}
