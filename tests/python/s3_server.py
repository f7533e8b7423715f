"""moto's S3 server on a loopback port it binds itself (port 0): prints the port, then serves.

The test fixture reads the port from the first line; no port is picked before the server binds
it, so no other process can take it in between.
"""

import os

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True)
os.environ["MOTO_PORT"] = str(server.port)
print(server.port, flush=True)
server.serve_forever()
