"""SockJS 0.3 (the protocol sockjs-node 0.3.24 speaks, which Meteor pins), hosting any app.

:class:`ddp.sockjs.server.SockJSServer` is a WSGI application; DDP is one app it hosts,
an echo is another (:mod:`ddp.server.sockjs_testserver`). It never looks inside the
messages.

Transports served: websocket, xhr-polling (with ``xhr_send``) and xhr-streaming, which
cover every browser Meteor's client supports (T11), and the raw ``<prefix>/websocket``
without SockJS framing. Not served, answered 404: the iframe page and the transports that
need it or serve only browsers without CORS XHR (jsonp, eventsource, htmlfile; Meteor's
client whitelists no streaming transport and reaches iframe-xhr-polling and jsonp-polling
only on such browsers).

This package imports nothing else of ``ddp``: its hosts give it what it needs (the
WebSocket class, the app) and patch the standard library first when they run on eventlet.
"""
