// Loaded with `node -r` before an MCP server that calls listen(PORT) on every interface (such as
// @modelcontextprotocol/server-everything): a listen given only a port (a number or a string of
// digits), optionally followed by a callback, is made to listen on 127.0.0.1. Every other call
// form passes through unchanged.
'use strict';
const net = require('net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const portOnly = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  const rest = args.slice(1);
  if (portOnly && (rest.length === 0 || (rest.length === 1 && typeof rest[0] === 'function'))) {
    return listen.call(this, port, '127.0.0.1', ...rest);
  }
  return listen.apply(this, args);
};
