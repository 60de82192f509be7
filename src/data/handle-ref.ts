/** @internal See {@link HANDLE_REF}: how a handle passed as an argument travels. */
export { HANDLE_REF } from "../wire/protocol.js";
