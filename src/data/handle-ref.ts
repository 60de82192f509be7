/**
 * @internal A class node passed as a call argument travels as `{ [HANDLE_REF]: name }`
 * (a handle itself cannot be cloned); the replica turns it back into a live handle.
 */
export const HANDLE_REF = "__tributaryHandle";
