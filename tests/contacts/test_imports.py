"""CSV import jobs through the API and a worker: streamed upload, progress, rejected rows as CSV,
the import rules, one import of an account at a time, and resuming after a worker died."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from mailcast.contacts.imports import Importer
from mailcast.contacts.store import contact_store


def _csv(n: int, start: int = 0, bad_every: int = 0, extra: str = "") -> bytes:
    out = ["Email Address,First Name,Last Name,City" + extra]
    for i in range(start, start + n):
        email = f"bad{i}@@example" if bad_every and i % bad_every == 0 else f"p{i}@example.org"
        out.append(f"{email},First{i},Last{i},City{i % 3}")
    return ("\n".join(out) + "\n").encode()


def _importer(engine, settings, clock, owner: str = "test-importer") -> Importer:
    return Importer(engine, contact_store(engine), settings, clock, owner)


async def _upload(tenant, data: bytes, **params):
    return await tenant.client.post(
        "/v1/contacts/imports",
        content=data,
        params=params,
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )


async def test_an_upload_is_imported_by_a_worker(tenant, engine, settings, clock):
    audience = await tenant.audience()
    r = await _upload(tenant, _csv(250, bad_every=50), audience_id=audience, filename="list.csv")
    assert r.status_code == 202, r.text
    job = r.json()
    assert (
        job["status"] == "queued"
        and job["object"] == "contact_import"
        and job["filename"] == "list.csv"
    )
    assert job["file_bytes"] == len(_csv(250, bad_every=50)) and job["progress"] == 0
    settings.import_batch_rows = 60
    seen = []
    importer = _importer(engine, settings, clock)
    assert await importer.take(job["id"])
    assert await importer.run(job["id"], lambda p: seen.append(p.offset)) == "done"
    assert len(seen) == 5 and seen == sorted(seen)  # progress moved with each batch of 60
    done = (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()
    assert (
        done["status"],
        done["rows_read"],
        done["created"],
        done["updated"],
        done["rejected"],
    ) == ("done", 250, 245, 0, 5)
    assert done["progress"] == 1.0 and done["finished_at"] and done["started_at"]
    r = await tenant.get(f"/v1/contacts/imports/{job['id']}/errors")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["line", "email", "reason"]
    assert [(row[0], row[1]) for row in rows[1:]] == [
        (str(i + 2), f"bad{i}@@example") for i in range(0, 250, 50)
    ]
    members = (await tenant.get(f"/v1/audiences/{audience}")).json()["member_count"]
    assert members == 245
    listed = (await tenant.get("/v1/contacts/imports")).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert not list(
        (settings.data_dir / "imports").iterdir()
    )  # the uploaded file is gone once done


async def test_multipart_upload_and_the_import_rules(tenant, engine, settings, clock):
    r = await tenant.post(
        "/v1/contacts",
        json={
            "email": "p1@example.org",
            "first_name": "Kept",
            "metadata": {"tier": "gold", "city": "Old"},
            "unsubscribed": True,
        },
    )
    assert r.status_code == 201
    data = (
        b"email,first_name,last_name,city,unsubscribed\n"
        b"P1@example.org,,Newlast,Paris,no\n"  # existing: names given win, empty cells keep
        b"p2@example.org,Two,,Rome,yes\n"
        b"p2@example.org,,Again,,\n"
    )  # a repeat in the file: merged
    r = await tenant.client.post(
        "/v1/contacts/imports",
        headers=tenant.headers,
        files={"file": ("people.csv", data, "text/csv")},
    )
    assert r.status_code == 202, r.text
    importer = _importer(engine, settings, clock)
    assert await importer.run_next() == r.json()["id"]
    done = (await tenant.get(f"/v1/contacts/imports/{r.json()['id']}")).json()
    assert (done["created"], done["updated"], done["rejected"], done["rows_read"]) == (1, 2, 0, 3)
    contacts = {c["email"]: c for c in (await tenant.get("/v1/contacts")).json()["data"]}
    one, two = contacts["p1@example.org"], contacts["p2@example.org"]
    assert (one["first_name"], one["last_name"], one["metadata"]) == (
        "Kept",
        "Newlast",
        {"tier": "gold", "city": "Paris"},
    )
    assert one["unsubscribed"] is True  # an import never re-subscribes
    assert (two["first_name"], two["last_name"], two["unsubscribed"]) == ("Two", "Again", True)


async def test_bad_uploads_are_refused_and_leave_no_file(tenant, settings):
    settings.import_max_file_bytes = 1000
    r = await _upload(tenant, _csv(100))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = await _upload(tenant, _csv(3), audience_id="aud_nope")
    assert r.status_code == 404
    r = await tenant.client.post(
        "/v1/contacts/imports",
        headers=tenant.headers,
        files={"upload": ("x.csv", b"email\n", "text/csv")},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "file"
    r = await tenant.client.post(
        "/v1/contacts/imports",
        headers=tenant.headers,
        data={"audiences": "aud_x"},
        files={"file": ("x.csv", b"email\n", "text/csv")},
    )
    assert r.status_code == 422 and r.json()["error"]["details"] == [
        {"field": "audiences", "message": "unknown field"}
    ]
    assert not list((settings.data_dir / "imports").iterdir())
    assert (await tenant.get("/v1/contacts/imports")).json()["data"] == []
    assert (await tenant.get("/v1/contacts/imports/imp_nope")).status_code == 404


async def test_a_file_without_an_email_column_fails_the_job_with_the_reason(
    tenant, engine, settings, clock
):
    job = (await _upload(tenant, b"name,city\nAda,London\n")).json()
    assert await _importer(engine, settings, clock).run_next() == job["id"]
    failed = (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()
    assert failed["status"] == "failed" and "no email column" in failed["error"]


async def test_one_import_of_an_account_runs_at_a_time(
    tenant, make_tenant, engine, settings, clock
):
    first = (await _upload(tenant, _csv(10))).json()
    second = (await _upload(tenant, _csv(10, start=10))).json()
    other = await make_tenant()
    theirs = (await _upload(other, _csv(10))).json()
    a, b = _importer(engine, settings, clock, "a"), _importer(engine, settings, clock, "b")
    assert await a.take(first["id"])
    assert not await b.take(second["id"])  # waits for the first of its account
    assert await b.take(theirs["id"])  # another account's runs alongside
    await a.run(first["id"])
    assert await b.take(second["id"])


@pytest.mark.parametrize("reader", ["here", "process"])
async def test_a_dead_workers_import_is_resumed_and_nothing_counts_twice(
    tenant, engine, settings, clock, reader
):
    settings.import_batch_rows = 100
    # "process": the file is read by a process of its own (what a large file gets)
    settings.import_reader_process_bytes = 0 if reader == "process" else 10**9
    audience = await tenant.audience()
    data = _csv(1000, bad_every=97)
    job = (await _upload(tenant, data, audience_id=audience)).json()
    dying = _importer(engine, settings, clock, "dying")
    assert await dying.take(job["id"])
    batches = asyncio.Event()
    count = 0

    def progress(_):
        nonlocal count
        count += 1
        if count == 3:
            batches.set()

    task = asyncio.create_task(dying.run(job["id"], progress))
    await batches.wait()
    task.cancel()  # the worker is gone after its third batch; its lease stays
    with pytest.raises(asyncio.CancelledError):
        await task
    halfway = (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()
    assert (
        halfway["status"] == "running"
        and 0 < halfway["progress"] < 1
        and halfway["rows_read"] >= 300
    )

    other = _importer(engine, settings, clock, "other")
    assert await other.run_next() is None  # its lease is still alive
    clock.advance(seconds=settings.import_lease_seconds + 1)
    assert await other.run_next() == job["id"]
    done = (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()
    bad = len(range(0, 1000, 97))
    assert (
        done["status"],
        done["rows_read"],
        done["created"],
        done["updated"],
        done["rejected"],
    ) == ("done", 1000, 1000 - bad, 0, bad)
    assert (await tenant.get(f"/v1/audiences/{audience}")).json()["member_count"] == 1000 - bad
    errors = (
        (await tenant.get(f"/v1/contacts/imports/{job['id']}/errors")).text.strip().split("\r\n")
    )
    assert len(errors) == 1 + bad  # each rejected row once, though a batch was read twice
    # The first worker, back from the dead, cannot write a batch any more.
    assert await dying.run(job["id"]) == "running"
    assert (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()["rows_read"] == 1000


async def test_the_worker_loop_imports_and_hands_back_on_stop(tenant, worker, settings):
    job = (await _upload(tenant, _csv(30))).json()
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()["status"] == "done":
            break
        await asyncio.sleep(0.05)
    stop.set()
    await run
    assert (await tenant.get(f"/v1/contacts/imports/{job['id']}")).json()["created"] == 30


async def test_a_body_that_is_no_file_is_refused(tenant):
    r = await tenant.post("/v1/contacts/imports", json={"contacts": [{"email": "a@example.org"}]})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
