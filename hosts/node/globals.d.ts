/*
 * XS's global trace(), for applications type-checked and run on the Node host (tools/node-app.ts
 * defines it there, printing to stdout).
 */
declare function trace(...values: unknown[]): void;
