"""The HTTP shell: GraphQL over HTTP and websockets, GraphiQL, provider webhook routes."""
