/*
 * The reference firmware's entry (manifest.json's main): the reference device (./reference.ts) on
 * the platform of the build.
 */
import {createPlatform} from "azure-iot/platform";
import {startReference} from "./reference.js";

export default function main(): void {
	startReference(createPlatform());
}
