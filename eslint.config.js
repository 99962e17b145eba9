// Lint rules that guard the architecture: the engine runs in plain Node (servers, tests,
// `understudy serve`), so only the Electron shell may import electron.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const electronOnlyIn = ['src-main/app/**', 'src-main/preload/**', 'src-main/main.ts'];
const typescript = ['**/*.ts', '**/*.cts'];

export default tseslint.config(
  { ignores: ['dist/**', 'out/**', 'node_modules/**', 'src-renderer/dist/**', 'test-artifacts/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: typescript,
    ignores: electronOnlyIn,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'electron', message: 'Only src-main/app, src-main/preload and src-main/main.ts may import electron: the engine must run in plain Node.' }],
          patterns: [{ group: ['electron/*'], message: 'Only the Electron shell may import electron.' }],
        },
      ],
    },
  },
  {
    files: typescript,
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
