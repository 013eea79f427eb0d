"""moto's S3 API server for the tests, with request signing enforced.

Plain `moto_server` accepts any credentials. This one knows exactly one IAM
user, with the access key and secret given on the command line, and checks
each request's SigV4 signature against it as S3 does: a client that signs
with other credentials gets 403. moto keeps everything in memory, so every
start sets the same user up again (and starts with no buckets).

    python moto-server.py HOST PORT ACCESS_KEY_ID SECRET_ACCESS_KEY

Each request is logged on stderr with its status (werkzeug's access log).
"""

import json
import sys

import werkzeug.serving
from moto import settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.server import main

USER = "edge-gateway-tests"

host, port, access_key_id, secret_access_key = sys.argv[1:5]

iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
iam.create_user(region_name="us-east-1", user_name=USER)
# moto generates random keys; the tests need known ones, so the generated key is given ours.
key = iam.create_access_key(user_name=USER)
key.access_key_id = access_key_id
key.secret_access_key = secret_access_key
iam.put_user_policy(
    USER,
    "s3-all",
    json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    ),
)
# No unauthenticated requests at all: from the first one on, every request is checked.
settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
# Tests read the access log: keep it free of terminal colour codes.
werkzeug.serving._log_add_style = False

main(["-H", host, "-p", port])
