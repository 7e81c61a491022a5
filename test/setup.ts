// Runs in every test file: what the file's tests wrote under the temp folder goes when the file is done.
import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/clinic.js';

afterAll(() => removeTempDirs());
