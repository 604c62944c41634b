// Starts GraphiQL on the gateway's /graphql page. Everything it needs is on the page: the
// vendored React, GraphiQL and explorer scripts before this one, and its settings in the
// JSON block #graphiql-settings (written by gateway/web/graphiql.py).
(function () {
  "use strict";

  var settings = JSON.parse(document.getElementById("graphiql-settings").textContent);

  var endpoint = new URL(window.location.href);
  endpoint.search = "";
  endpoint.hash = "";
  var socket = new URL(endpoint.href);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  var fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: socket.href,
    headers: settings.headers,
    wsConnectionParams: settings.connectionParams,
  });

  // GraphiQL's shouldPersistHeaders covers its tabs but not its history, which stores each run's
  // headers beside its query. Without persistence, this storage keeps every "headers" value
  // out of localStorage (and removes any left from before).
  var PREFIX = "graphiql:";
  var HEADERS = PREFIX + "headers";
  var WITH_HEADERS = [PREFIX + "tabState", PREFIX + "queries", PREFIX + "favorites"];

  function withoutHeaders(value) {
    try {
      return JSON.stringify(
        JSON.parse(value, function (key, item) {
          return key === "headers" ? null : item;
        }),
      );
    } catch (error) {
      return value;
    }
  }

  var headerlessStorage = {
    getItem: function (key) {
      return window.localStorage.getItem(key);
    },
    setItem: function (key, value) {
      if (key === HEADERS) {
        window.localStorage.removeItem(key);
      } else if (WITH_HEADERS.indexOf(key) >= 0) {
        window.localStorage.setItem(key, withoutHeaders(value));
      } else {
        window.localStorage.setItem(key, value);
      }
    },
    removeItem: function (key) {
      window.localStorage.removeItem(key);
    },
    clear: function () {
      Object.keys(window.localStorage).forEach(function (key) {
        if (key.indexOf(PREFIX) === 0) {
          window.localStorage.removeItem(key);
        }
      });
    },
    get length() {
      return window.localStorage.length;
    },
  };

  var props = {
    fetcher: fetcher,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    defaultQuery: settings.query,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    inputValueDeprecation: true,
    // Headers (an API key among them) are kept in the browser's storage only when the
    // gateway says so: for its development key, on loopback.
    shouldPersistHeaders: settings.persistHeaders,
  };
  if (settings.editorHeaders) {
    props.headers = settings.editorHeaders;
  }
  if (!settings.persistHeaders) {
    [HEADERS].concat(WITH_HEADERS).forEach(function (key) {
      var stored = window.localStorage.getItem(key);
      if (stored !== null) {
        headerlessStorage.setItem(key, stored);
      }
    });
    props.storage = headerlessStorage;
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, props));
})();
