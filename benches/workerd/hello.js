// The workerd side of the hello scenario: the same body as examples/hello.
export default {
  async fetch(request) {
    return new Response("hello from outpost", { headers: { "content-type": "text/plain; charset=utf-8" } });
  },
};
