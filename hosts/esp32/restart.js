/*
 * esp_restart() for the "reboot" direct method. The SDK only offers it through the ECMA-419
 * System object, which would pull in the whole embedded:provider/builtin.
 */
export default function restart() @ "xs_azure_restart";
