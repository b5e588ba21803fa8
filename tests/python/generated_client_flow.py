"""A full account flow against a running Worker, through a Python client that
openapi-python-client generated from the Worker's own /openapi.json.

Run by tests/api/generated_client.rs. It uses only the generated package (its
API functions, models, Client and AuthenticatedClient): every request body is
built with the model the API function declares for it, and every answer must
come back as the model the document declares for the expected status. Any body
the client cannot send, any answer it cannot parse, any other status, or a
wrong value ends the script with a message and exit status 1. Error answers
must parse as a generated model with the expected `code`, whatever its name.

    python generated_client_flow.py --client-dir DIR --base-url URL --client-ip IP \
        --email EMAIL:CODE --phone PHONE:CODE

DIR holds the generated package `otp_edge_client`; the identities are
TEST_IDENTITIES of the Worker (fixed codes, nothing is sent). Requests carry
CF-Connecting-IP, as Cloudflare would set it in front of the Worker.
"""

import argparse
import sys
import typing
import uuid


class FlowFailed(Exception):
    pass


def fail(message):
    raise FlowFailed(message)


def check(condition, message):
    if not condition:
        fail(message)


def body_of(api, what, **fields):
    """The request body model that `api.sync_detailed` declares, built from
    `fields`; fails if the model cannot take them, or drops one when sent."""
    model = typing.get_type_hints(api.sync_detailed).get("body")
    check(model is not None, f"{what}: the generated {api.__name__} takes no body")
    try:
        body = model(**fields)
    except TypeError as e:
        fail(f"{what}: the generated body model {model.__name__} cannot carry {sorted(fields)}: TypeError: {e}")
    sent = body.to_dict()
    dropped = sorted(set(fields) - set(sent))
    check(not dropped, f"{what}: the generated body model {model.__name__} does not send {dropped}: {sent}")
    return body


def send(what, api, **kwargs):
    """`api.sync_detailed(**kwargs)`: the status and the parsed answer."""
    try:
        response = api.sync_detailed(**kwargs)
    # An undeclared status (raise_on_unexpected_status), or an answer it cannot parse.
    except Exception as e:  # noqa: BLE001
        fail(f"{what}: the generated client raised {type(e).__name__}: {e}")
    return int(response.status_code), response.parsed, response.content[:500]


def call(what, api, status, model, **kwargs):
    """The parsed answer of `api`, which must be a `model` with this status."""
    got, parsed, content = send(what, api, **kwargs)
    if got != status or not isinstance(parsed, model):
        fail(
            f"{what}: expected {status} parsed as {model.__name__}, got {got} parsed as "
            f"{type(parsed).__name__}: {content!r}"
        )
    return parsed


def refused(what, api, status, code, **kwargs):
    """The parsed answer of `api`, which must be refused with this status and
    error code, parsed as one of the generated models (whatever its name)."""
    got, parsed, content = send(what, api, **kwargs)
    generated = type(parsed).__module__.startswith("otp_edge_client.models.")
    got_code = getattr(getattr(parsed, "code", None), "value", None)
    if got != status or not generated or got_code != code:
        fail(
            f"{what}: expected {status} {code} parsed as a generated error model, got {got} "
            f"parsed as {type(parsed).__name__} with code {got_code!r}: {content!r}"
        )
    return parsed


def identity(text):
    destination, _, code = text.rpartition(":")
    if not destination or not code:
        raise argparse.ArgumentTypeError(f"expected DESTINATION:CODE, got {text!r}")
    return destination, code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-dir", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--client-ip", required=True)
    parser.add_argument("--email", required=True, type=identity, help="EMAIL:CODE of a test identity")
    parser.add_argument("--phone", required=True, type=identity, help="PHONE:CODE of a test identity")
    args = parser.parse_args()
    sys.path.insert(0, args.client_dir)
    try:
        flow(args)
    except FlowFailed as e:
        print(f"generated client flow FAILED: {e}", file=sys.stderr)
        return 1
    print("generated client flow passed")
    return 0


def flow(args):
    import httpx  # the generated client's own HTTP library, for its timeout
    from otp_edge_client import AuthenticatedClient, Client
    from otp_edge_client.api.account import list_sessions, logout, me, refresh_token, register, revoke_session
    from otp_edge_client.api.otp import request_otp, verify_otp
    from otp_edge_client.models import (
        DestinationVerified,
        Done,
        LoggedIn,
        OtpRequested,
        Purpose,
        RegisterVerified,
        Sessions,
        TokenPair,
        User,
    )

    (email, email_code), (phone, phone_code) = args.email, args.phone
    options = {
        "base_url": args.base_url,
        "headers": {"CF-Connecting-IP": args.client_ip},
        "timeout": httpx.Timeout(30.0),
        "raise_on_unexpected_status": True,
    }
    client = Client(**options)

    def signed_in(access):
        return AuthenticatedClient(token=access, **options)

    def code_for(destination, code, purpose, expected, **device):
        """Requests a code for `destination` and verifies it; the parsed answer."""
        what = f"{purpose} code for {destination}"
        body = body_of(request_otp, f"request a {what}", destination=destination, purpose=purpose)
        requested = call(f"request a {what}", request_otp, 200, OtpRequested, client=client, body=body)
        check(isinstance(requested.otp_id, uuid.UUID), f"otp_id is not a UUID: {requested.otp_id!r}")
        check(requested.expires_in > 0, f"expires_in is {requested.expires_in}")
        body = body_of(verify_otp, f"verify a {what}", otp_id=requested.otp_id, otp_code=code, **device)
        return call(f"verify a {what}", verify_otp, 200, expected, client=client, body=body)

    device = {"install_id": f"py-{uuid.uuid4().hex[:12]}", "platform": "python", "app_version": "1.2.3"}

    # Register: a register code verified gives the token that /register takes.
    verified = code_for(email, email_code, Purpose.REGISTER, RegisterVerified)
    check(verified.verified_destination == email, f"verified {verified.verified_destination!r}, not {email!r}")
    username = f"py_{uuid.uuid4().hex[:12]}"
    body = body_of(
        register, "register", verification_token=verified.verification_token, username=username.upper(), **device
    )
    registered = call("register", register, 201, LoggedIn, client=client, body=body)
    user = registered.user
    check(user.username == username, f"registered as {user.username!r}, not {username!r} (lower-cased)")
    check((user.email, user.email_verified) == (email, True), f"the registered user: {user}")

    # Log in, twice: three sessions of the user in all.
    first = code_for(email, email_code, Purpose.LOGIN, LoggedIn, **device)
    second = code_for(email, email_code, Purpose.LOGIN, LoggedIn)
    for login in (first, second):
        check(login.user.id == user.id, f"logged in as {login.user.id}, registered as {user.id}")
    ids = {registered.session_id, first.session_id, second.session_id}
    check(len(ids) == 3, f"three sign-ins gave the sessions {ids}")

    # Refresh rotates the pair of the session.
    body = body_of(refresh_token, "refresh", refresh=second.refresh)
    refreshed = call("refresh", refresh_token, 200, TokenPair, client=client, body=body)
    check(refreshed.session_id == second.session_id, f"refreshed {refreshed.session_id}, not {second.session_id}")
    check(refreshed.access != second.access, "the refreshed access token is the old one")
    check(refreshed.refresh != second.refresh, "the refreshed refresh token is the old one")
    session = signed_in(refreshed.access)

    found = call("me", me, 200, User, client=session)
    check(found.id == user.id and found.username == username, f"me is {found}, registered {user}")

    # The sessions, the current one marked, with the install and the client IP.
    listed = call("list sessions", list_sessions, 200, Sessions, client=session)
    by_id = {s.id: s for s in listed.sessions}
    check(set(by_id) == ids, f"listed the sessions {sorted(map(str, by_id))}, signed in as {sorted(map(str, ids))}")
    check([s.id for s in listed.sessions if s.current] == [second.session_id], f"current: {listed.sessions}")
    check(by_id[first.session_id].device is not None, f"the first login's device: {by_id[first.session_id]}")
    check(by_id[first.session_id].device.install_id == device["install_id"], f"{by_id[first.session_id]}")
    check(by_id[second.session_id].device is None, f"the second login named no install: {by_id[second.session_id]}")
    for s in listed.sessions:
        check(s.ip_address == args.client_ip, f"session {s.id} has the IP {s.ip_address!r}, sent {args.client_ip}")

    # Revoke the first login's session: gone from the list, its tokens refused.
    call("revoke a session", revoke_session, 200, Done, client=session, id=first.session_id)
    listed = call("list sessions after revoking", list_sessions, 200, Sessions, client=session)
    check(first.session_id not in {s.id for s in listed.sessions}, f"the revoked session is listed: {listed}")
    refused("me with a revoked session", me, 401, "SESSION_REVOKED", client=signed_in(first.access))
    body = body_of(refresh_token, "refresh a revoked session", refresh=first.refresh)
    # Its current refresh token says the session ended: log in again.
    refused("refresh a revoked session", refresh_token, 401, "SESSION_REVOKED", client=client, body=body)

    # Log out of the current session: its access token is refused after.
    done = call("logout", logout, 200, Done, client=session)
    check(done.message == "Logged out", f"logout said {done.message!r}")
    refused("me after logout", me, 401, "SESSION_REVOKED", client=session)

    # The phone, and the other answers of a verify: a wrong code, then a
    # `verify` code, whose answer is the third member of the Verified union.
    what = f"verify code for {phone}"
    body = body_of(request_otp, f"request a {what}", destination=phone, purpose=Purpose.VERIFY)
    requested = call(f"request a {what}", request_otp, 200, OtpRequested, client=client, body=body)
    guess = "".join(str((int(c) + 1) % 10) for c in phone_code)
    body = body_of(verify_otp, f"verify a {what} with a wrong code", otp_id=requested.otp_id, otp_code=guess)
    wrong = refused(f"verify a {what} with a wrong code", verify_otp, 400, "INVALID_OTP", client=client, body=body)
    check(wrong.message == "Invalid OTP", f"a wrong code: {wrong}")
    body = body_of(verify_otp, f"verify a {what}", otp_id=requested.otp_id, otp_code=phone_code)
    verified = call(f"verify a {what}", verify_otp, 200, DestinationVerified, client=client, body=body)
    check(verified.message == "OTP verified successfully", f"verified: {verified}")


if __name__ == "__main__":
    sys.exit(main())
